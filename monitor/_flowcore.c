/* monitor._flowcore: the flow table's per-packet fast lane, in C.
 *
 * Why C: after the mypyc build, what is left of the flow loop's cost is CPython's object model
 * (perf: dict and set lookups on freshly sliced bytes keys, allocating and freeing per-packet
 * objects). This module does the part of monitor/flows.py that runs for most packets with no
 * Python object at all: it decodes the common encapsulations (decode()'s own fast path:
 * Ethernet with at most one 802.1Q tag, IPv4 without options and not fragmented or IPv6
 * without extension headers, TCP or UDP with the header captured), drops SPAN duplicates
 * against a two-generation signature window, finds the packet's flow in an open-addressing
 * index mirrored from FlowTable._index, and counts the packet into per-flow pending deltas.
 * TCP payload of flows the stream manager still wants, and UDP datagrams of the observer's
 * ports, are handed to the same Python callbacks the Python loop calls.
 *
 * Everything else (a frame it cannot decode, a flow's first packet, a SYN that is not a
 * SYN-ACK, an idle timeout) goes to the Python handler, FlowTable._frame, in capture order,
 * after the flow's pending deltas have been written into its Flow object ("settled"). The
 * Python FlowTable stays the owner of every flow: it tells the core of each flow it starts
 * (add) and ends (remove), and settles all flows before it sweeps. With this module absent (no
 * C compiler, or MEDMON_PURE_PYTHON=1) the same FlowTable runs everything in Python;
 * tests/test_fast_lane.py checks that both give the same flows, records and observations.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define KEY_MAX 40 /* 16 + 16 + 4 + 1 */
#define SIG_MAX 48 /* 1 + 16 + 24 */

/* ---- hashing ------------------------------------------------------------------------- */

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        h = (h ^ load64(p)) * 0x9fb21c651e98df25ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        memcpy(&v, p, n);
        h = (h ^ v) * 0x9fb21c651e98df25ULL;
    }
    return mix64(h) | 1; /* never 0: 0 marks an empty slot */
}

/* ---- the signature window (SPAN duplicates) -------------------------------------------- */

typedef struct {
    uint64_t *hashes; /* 0: empty */
    uint32_t *ids;    /* index into arena, stride SIG_MAX + 1 (length byte first) */
    uint8_t *arena;
    size_t cap, count, arena_cap;
} Gen;

static int gen_init(Gen *g, size_t cap) {
    g->hashes = PyMem_Calloc(cap, sizeof(uint64_t));
    g->ids = PyMem_Malloc(cap * sizeof(uint32_t));
    g->arena_cap = cap / 2;
    g->arena = PyMem_Malloc(g->arena_cap * (SIG_MAX + 1));
    g->cap = cap;
    g->count = 0;
    if (!g->hashes || !g->ids || !g->arena) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void gen_free(Gen *g) {
    PyMem_Free(g->hashes);
    PyMem_Free(g->ids);
    PyMem_Free(g->arena);
    g->hashes = NULL;
    g->ids = NULL;
    g->arena = NULL;
}

static int gen_has(const Gen *g, uint64_t h, const uint8_t *sig, size_t n) {
    size_t mask = g->cap - 1;
    size_t i = h & mask;
    for (;;) {
        uint64_t hh = g->hashes[i];
        if (hh == 0)
            return 0;
        if (hh == h) {
            const uint8_t *s = g->arena + (size_t)g->ids[i] * (SIG_MAX + 1);
            if (s[0] == n && memcmp(s + 1, sig, n) == 0)
                return 1;
        }
        i = (i + 1) & mask;
    }
}

static void gen_put_slot(Gen *g, uint64_t h, uint32_t id) {
    size_t mask = g->cap - 1;
    size_t i = h & mask;
    while (g->hashes[i])
        i = (i + 1) & mask;
    g->hashes[i] = h;
    g->ids[i] = id;
}

static int gen_add(Gen *g, uint64_t h, const uint8_t *sig, size_t n) {
    if ((g->count + 1) * 2 > g->cap) {
        size_t ncap = g->cap * 2;
        uint64_t *oh = g->hashes;
        uint32_t *oi = g->ids;
        size_t ocap = g->cap;
        g->hashes = PyMem_Calloc(ncap, sizeof(uint64_t));
        g->ids = PyMem_Malloc(ncap * sizeof(uint32_t));
        if (!g->hashes || !g->ids) {
            PyMem_Free(g->hashes);
            PyMem_Free(g->ids);
            g->hashes = oh;
            g->ids = oi;
            PyErr_NoMemory();
            return -1;
        }
        g->cap = ncap;
        for (size_t i = 0; i < ocap; i++)
            if (oh[i])
                gen_put_slot(g, oh[i], oi[i]);
        PyMem_Free(oh);
        PyMem_Free(oi);
    }
    if (g->count >= g->arena_cap) {
        size_t ncap = g->arena_cap * 2;
        uint8_t *a = PyMem_Realloc(g->arena, ncap * (SIG_MAX + 1));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        g->arena = a;
        g->arena_cap = ncap;
    }
    uint32_t id = (uint32_t)g->count++;
    uint8_t *s = g->arena + (size_t)id * (SIG_MAX + 1);
    s[0] = (uint8_t)n;
    memcpy(s + 1, sig, n);
    gen_put_slot(g, h, id);
    return 0;
}

static void gen_clear(Gen *g) {
    if (g->count) {
        memset(g->hashes, 0, g->cap * sizeof(uint64_t));
        g->count = 0;
    }
}

/* ---- flows -------------------------------------------------------------------------- */

typedef struct {
    PyObject *flow; /* the Flow (a strong reference); NULL: a free entry */
    int64_t last_ns;
    int64_t pk[2], by[2], pl[2]; /* pending: [0] client -> server, [1] server -> client */
    uint8_t fl[2];               /* pending TCP flags: [0] the client's, [1] the server's */
    uint8_t dirty;
    uint8_t wants; /* TCP: the stream manager still wants this flow's payload */
    uint8_t klen[2];
    uint8_t key[2][KEY_MAX]; /* [0] the client -> server key, [1] server -> client */
    uint32_t next_free;
    /* Stream bypass per direction (bypass()): the next byp_left payload bytes from sequence
     * number byp_seq are only counted; byp_done of them are not reported to the stream
     * manager yet. */
    uint32_t byp_seq[2];
    int64_t byp_left[2], byp_done[2];
} Entry;

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t ref;  /* entry index << 1 | direction (0: client -> server) */
} Slot;

typedef struct {
    PyObject_HEAD
    int64_t window, tcp_idle, udp_idle;
    uint8_t udp_ports[8192];
    PyObject *stream_tcp;   /* StreamManager.tcp or NULL */
    PyObject *bypassed;     /* StreamManager.bypassed or NULL */
    PyObject *obs_syn;      /* ObservationCollector.syn or NULL */
    PyObject *obs_datagram; /* ObservationCollector.datagram or NULL */
    Gen gens[2];
    Gen syn_seen; /* SYN-ACK traits already handed to obs_syn (never forgotten, as there) */
    int cur;
    int64_t rotate_at;
    Slot *slots;
    size_t cap, used;
    Entry *ents;
    size_t n_ents, ents_cap;
    uint32_t free_head; /* index + 1 of the first free entry, 0: none */
    uint32_t *dirty;
    size_t n_dirty, dirty_cap;
    long long duplicates;
    PyObject *batch; /* a list of frames from the iterator, being counted */
    Py_ssize_t batch_pos;
    PyObject *records; /* a Records block from the iterator, being counted */
    Py_ssize_t records_pos;
} Core;

static PyObject *s_pts, *s_ptc, *s_bts, *s_btc, *s_lts, *s_ltc, *s_fc, *s_fs, *s_last, *s_stream,
    *s_app, *s_isn_server;

/* -- the index -- */

static int key_eq(const Core *c, uint32_t ref, const uint8_t *key, size_t n) {
    const Entry *e = &c->ents[ref >> 1];
    int d = ref & 1;
    return e->klen[d] == n && memcmp(e->key[d], key, n) == 0;
}

static long idx_find(const Core *c, uint64_t h, const uint8_t *key, size_t n) {
    size_t mask = c->cap - 1;
    size_t i = h & mask;
    for (;;) {
        const Slot *s = &c->slots[i];
        if (s->hash == 0)
            return -1;
        if (s->hash == h && key_eq(c, s->ref, key, n))
            return (long)i;
        i = (i + 1) & mask;
    }
}

static void idx_place(Core *c, uint64_t h, uint32_t ref) {
    size_t mask = c->cap - 1;
    size_t i = h & mask;
    while (c->slots[i].hash)
        i = (i + 1) & mask;
    c->slots[i].hash = h;
    c->slots[i].ref = ref;
}

static int idx_grow(Core *c) {
    size_t ocap = c->cap;
    Slot *old = c->slots;
    Slot *n = PyMem_Calloc(ocap * 2, sizeof(Slot));
    if (!n) {
        PyErr_NoMemory();
        return -1;
    }
    c->slots = n;
    c->cap = ocap * 2;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].hash)
            idx_place(c, old[i].hash, old[i].ref);
    PyMem_Free(old);
    return 0;
}

/* Backward-shift deletion (linear probing): no tombstones. */
static void idx_delete(Core *c, size_t i) {
    size_t mask = c->cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (c->slots[j].hash == 0)
            break;
        size_t k = c->slots[j].hash & mask;
        int stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            c->slots[i] = c->slots[j];
            i = j;
        }
    }
    c->slots[i].hash = 0;
    c->used--;
}

/* Sets key -> ref (replacing the key's slot if it is there, as a dict assignment does). */
static int idx_set(Core *c, const uint8_t *key, size_t n, uint32_t ref) {
    uint64_t h = hash_bytes(key, n);
    long i = idx_find(c, h, key, n);
    if (i >= 0) {
        c->slots[i].ref = ref;
        return 0;
    }
    if ((c->used + 1) * 2 > c->cap && idx_grow(c) < 0)
        return -1;
    idx_place(c, h, ref);
    c->used++;
    return 0;
}


/* A capture time as a C integer. Times are never negative (pcap and pcapng store unsigned
 * ones); a damaged pcapng can still make one beyond 2**62 ns (year 2116), which is clamped
 * there so that no sum of times overflows. -1 with an exception for what is not an int. */
#define TS_MAX (1LL << 62)
static long long as_ts(PyObject *o) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0 || v > TS_MAX)
        return TS_MAX;
    if (overflow < 0 || v < 0)
        return 0;
    return v;
}

/* -- settling: pending deltas into the Flow object -- */

static int add_attr(PyObject *o, PyObject *name, int64_t delta) {
    if (!delta)
        return 0;
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v)
        return -1;
    PyObject *d = PyLong_FromLongLong(delta);
    if (!d) {
        Py_DECREF(v);
        return -1;
    }
    PyObject *s = PyNumber_Add(v, d);
    Py_DECREF(v);
    Py_DECREF(d);
    if (!s)
        return -1;
    int r = PyObject_SetAttr(o, name, s);
    Py_DECREF(s);
    return r;
}

static int or_attr(PyObject *o, PyObject *name, int bits) {
    if (!bits)
        return 0;
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v)
        return -1;
    long cur = PyLong_AsLong(v);
    Py_DECREF(v);
    if (cur == -1 && PyErr_Occurred())
        return -1;
    PyObject *s = PyLong_FromLong(cur | bits);
    if (!s)
        return -1;
    int r = PyObject_SetAttr(o, name, s);
    Py_DECREF(s);
    return r;
}

/* Tell the stream manager what the bypass passed over, and end the bypass (Python may now
 * deliver bytes of the flow itself: the manager arms a new one). */
static int report_bypass(Core *c, Entry *e) {
    for (int d = 0; d < 2; d++) {
        int64_t n = e->byp_done[d];
        e->byp_left[d] = e->byp_done[d] = 0;
        if (!n || !c->bypassed)
            continue;
        PyObject *flow = Py_NewRef(e->flow);
        PyObject *o_n = PyLong_FromLongLong(n);
        PyObject *r = NULL;
        if (o_n) {
            PyObject *cargs[3] = {flow, d ? Py_False : Py_True, o_n};
            r = PyObject_Vectorcall(c->bypassed, cargs, 3, NULL);
            Py_DECREF(o_n);
        }
        Py_DECREF(flow);
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static int settle(Core *c, Entry *e) {
    if (!e->flow)
        return 0;
    if ((e->byp_left[0] | e->byp_left[1] | e->byp_done[0] | e->byp_done[1]) &&
        report_bypass(c, e) < 0)
        return -1;
    if (!e->dirty)
        return 0;
    e->dirty = 0;
    PyObject *f = e->flow;
    if (add_attr(f, s_pts, e->pk[0]) < 0 || add_attr(f, s_ptc, e->pk[1]) < 0 ||
        add_attr(f, s_bts, e->by[0]) < 0 || add_attr(f, s_btc, e->by[1]) < 0 ||
        add_attr(f, s_lts, e->pl[0]) < 0 || add_attr(f, s_ltc, e->pl[1]) < 0 ||
        or_attr(f, s_fc, e->fl[0]) < 0 || or_attr(f, s_fs, e->fl[1]) < 0)
        return -1;
    PyObject *last = PyLong_FromLongLong(e->last_ns);
    if (!last)
        return -1;
    int r = PyObject_SetAttr(f, s_last, last);
    Py_DECREF(last);
    e->pk[0] = e->pk[1] = e->by[0] = e->by[1] = e->pl[0] = e->pl[1] = 0;
    e->fl[0] = e->fl[1] = 0;
    return r;
}

/* Re-read what Python may have changed of the flow: its last packet time, whether the stream
 * manager still wants its payload. */
static int refresh(Entry *e) {
    PyObject *v = PyObject_GetAttr(e->flow, s_last);
    if (!v)
        return -1;
    long long last = as_ts(v);
    Py_DECREF(v);
    if (last == -1 && PyErr_Occurred())
        return -1;
    e->last_ns = last;
    v = PyObject_GetAttr(e->flow, s_stream);
    if (!v)
        return -1;
    e->wants = v != Py_False;
    Py_DECREF(v);
    return 0;
}

static int mark_dirty(Core *c, uint32_t idx) {
    Entry *e = &c->ents[idx];
    if (e->dirty)
        return 0;
    if (c->n_dirty == c->dirty_cap && c->dirty_cap >= 2 * c->n_ents) {
        /* Entries settled one by one since the last settle_all: keep only the dirty ones. */
        size_t k = 0;
        for (size_t i = 0; i < c->n_dirty; i++) {
            Entry *x = &c->ents[c->dirty[i]];
            if (x->dirty == 1 && x->flow) {
                x->dirty = 2; /* listed once */
                c->dirty[k++] = c->dirty[i];
            }
        }
        for (size_t i = 0; i < k; i++)
            c->ents[c->dirty[i]].dirty = 1;
        c->n_dirty = k;
    }
    if (c->n_dirty == c->dirty_cap) {
        size_t ncap = c->dirty_cap ? c->dirty_cap * 2 : 1024;
        uint32_t *d = PyMem_Realloc(c->dirty, ncap * sizeof(uint32_t));
        if (!d) {
            PyErr_NoMemory();
            return -1;
        }
        c->dirty = d;
        c->dirty_cap = ncap;
    }
    c->dirty[c->n_dirty++] = idx;
    e->dirty = 1;
    return 0;
}

/* ---- the type ---------------------------------------------------------------------- */

static int Core_init(Core *c, PyObject *args, PyObject *kw) {
    static char *names[] = {"window_ns", "tcp_idle_ns", "udp_idle_ns", "udp_ports", "stream_tcp",
                            "obs_datagram", "bypassed", "obs_syn", NULL};
    long long window, tcp_idle, udp_idle;
    PyObject *ports, *stream_tcp, *obs, *bypassed = Py_None, *obs_syn = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "LLLOOO|OO", names, &window, &tcp_idle, &udp_idle,
                                     &ports, &stream_tcp, &obs, &bypassed, &obs_syn))
        return -1;
    if (c->slots) {
        PyErr_SetString(PyExc_RuntimeError, "Core is initialised once");
        return -1;
    }
    c->window = window;
    c->tcp_idle = tcp_idle;
    c->udp_idle = udp_idle;
    memset(c->udp_ports, 0, sizeof c->udp_ports);
    PyObject *it = PyObject_GetIter(ports);
    if (!it)
        return -1;
    PyObject *p;
    while ((p = PyIter_Next(it))) {
        long port = PyLong_AsLong(p);
        Py_DECREF(p);
        if (port == -1 && PyErr_Occurred()) {
            Py_DECREF(it);
            return -1;
        }
        if (port >= 0 && port < 65536)
            c->udp_ports[port >> 3] |= (uint8_t)(1 << (port & 7));
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    c->stream_tcp = stream_tcp == Py_None ? NULL : Py_NewRef(stream_tcp);
    c->obs_datagram = obs == Py_None ? NULL : Py_NewRef(obs);
    c->bypassed = bypassed == Py_None ? NULL : Py_NewRef(bypassed);
    c->obs_syn = obs_syn == Py_None ? NULL : Py_NewRef(obs_syn);
    if (gen_init(&c->gens[0], 4096) < 0 || gen_init(&c->gens[1], 4096) < 0 ||
        gen_init(&c->syn_seen, 1024) < 0)
        return -1;
    c->cur = 0;
    c->rotate_at = 0;
    c->cap = 1024;
    c->slots = PyMem_Calloc(c->cap, sizeof(Slot));
    c->ents_cap = 256;
    c->ents = PyMem_Calloc(c->ents_cap, sizeof(Entry));
    if (!c->slots || !c->ents) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int Core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->batch);
    Py_VISIT(c->records);
    Py_VISIT(c->stream_tcp);
    Py_VISIT(c->obs_datagram);
    Py_VISIT(c->bypassed);
    Py_VISIT(c->obs_syn);
    for (size_t i = 0; i < c->n_ents; i++)
        Py_VISIT(c->ents[i].flow);
    return 0;
}

static int Core_clear(Core *c) {
    Py_CLEAR(c->batch);
    Py_CLEAR(c->records);
    Py_CLEAR(c->stream_tcp);
    Py_CLEAR(c->obs_datagram);
    Py_CLEAR(c->bypassed);
    Py_CLEAR(c->obs_syn);
    for (size_t i = 0; i < c->n_ents; i++)
        Py_CLEAR(c->ents[i].flow);
    return 0;
}

static void Core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    Core_clear(c);
    gen_free(&c->gens[0]);
    gen_free(&c->gens[1]);
    gen_free(&c->syn_seen);
    PyMem_Free(c->slots);
    PyMem_Free(c->ents);
    PyMem_Free(c->dirty);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int get_key(PyObject *o, const uint8_t **p, Py_ssize_t *n) {
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "a flow key is bytes");
        return -1;
    }
    *p = (const uint8_t *)PyBytes_AS_STRING(o);
    *n = PyBytes_GET_SIZE(o);
    if (*n > KEY_MAX) {
        PyErr_SetString(PyExc_ValueError, "flow key too long");
        return -1;
    }
    return 0;
}

static PyObject *Core_add(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(ckey, skey, flow, last_ns)");
        return NULL;
    }
    const uint8_t *ck, *sk;
    Py_ssize_t cn, sn;
    if (get_key(args[0], &ck, &cn) < 0 || get_key(args[1], &sk, &sn) < 0)
        return NULL;
    long long last = as_ts(args[3]);
    if (last == -1 && PyErr_Occurred())
        return NULL;
    uint32_t idx;
    if (c->free_head) {
        idx = c->free_head - 1;
        c->free_head = c->ents[idx].next_free;
    } else {
        if (c->n_ents == c->ents_cap) {
            size_t ncap = c->ents_cap * 2;
            Entry *n = PyMem_Realloc(c->ents, ncap * sizeof(Entry));
            if (!n)
                return PyErr_NoMemory();
            memset(n + c->ents_cap, 0, (ncap - c->ents_cap) * sizeof(Entry));
            c->ents = n;
            c->ents_cap = ncap;
        }
        idx = (uint32_t)c->n_ents++;
    }
    Entry *e = &c->ents[idx];
    memset(e, 0, sizeof *e);
    e->flow = Py_NewRef(args[2]);
    e->last_ns = last;
    e->wants = 1; /* refreshed after the handler: the stream manager decides on this packet */
    e->klen[0] = (uint8_t)cn;
    e->klen[1] = (uint8_t)sn;
    memcpy(e->key[0], ck, cn);
    memcpy(e->key[1], sk, sn);
    if (idx_set(c, ck, cn, idx << 1) < 0 || idx_set(c, sk, sn, idx << 1 | 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static long find_entry(Core *c, const uint8_t *key, size_t n) {
    long i = idx_find(c, hash_bytes(key, n), key, n);
    return i < 0 ? -1 : (long)(c->slots[i].ref >> 1);
}

/* remove(ckey, skey): the flow ended; its pending deltas are settled first. */
static PyObject *Core_remove(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "remove(ckey, skey)");
        return NULL;
    }
    const uint8_t *ck, *sk;
    Py_ssize_t cn, sn;
    if (get_key(args[0], &ck, &cn) < 0 || get_key(args[1], &sk, &sn) < 0)
        return NULL;
    uint64_t hc = hash_bytes(ck, cn);
    long si = idx_find(c, hc, ck, cn);
    if (si < 0)
        Py_RETURN_NONE;
    uint32_t idx = c->slots[si].ref >> 1;
    if (settle(c, &c->ents[idx]) < 0)
        return NULL;
    /* settling may have called into Python: look the key up again */
    si = idx_find(c, hc, ck, cn);
    if (si < 0 || (c->slots[si].ref >> 1) != idx)
        Py_RETURN_NONE;
    Entry *e = &c->ents[idx];
    idx_delete(c, (size_t)si);
    long sj = idx_find(c, hash_bytes(sk, sn), sk, sn);
    if (sj >= 0 && (c->slots[sj].ref >> 1) == idx)
        idx_delete(c, (size_t)sj);
    Py_CLEAR(e->flow);
    e->dirty = 0;
    e->next_free = c->free_head;
    c->free_head = idx + 1;
    Py_RETURN_NONE;
}

/* bypass(key, from_client, seq, nbytes): the stream manager does not need the next nbytes of
 * payload of the flow's direction, which start at sequence number seq: count them only (and
 * report them with StreamManager.bypassed before the manager sees the flow again). */
static PyObject *Core_bypass(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "bypass(key, from_client, seq, nbytes)");
        return NULL;
    }
    const uint8_t *k;
    Py_ssize_t n;
    if (get_key(args[0], &k, &n) < 0)
        return NULL;
    int from_client = PyObject_IsTrue(args[1]);
    unsigned long seq = PyLong_AsUnsignedLong(args[2]);
    long long nbytes = PyLong_AsLongLong(args[3]);
    if (from_client < 0 || PyErr_Occurred())
        return NULL;
    long idx = find_entry(c, k, n);
    if (idx < 0 || nbytes <= 0)
        Py_RETURN_NONE;
    Entry *e = &c->ents[idx];
    int d = from_client ? 0 : 1;
    if (e->byp_done[d]) { /* still to report: leave that bypass as it is */
        Py_RETURN_NONE;
    }
    e->byp_seq[d] = (uint32_t)seq;
    e->byp_left[d] = nbytes;
    Py_RETURN_NONE;
}

static PyObject *Core_settle(Core *c, PyObject *key) {
    const uint8_t *k;
    Py_ssize_t n;
    if (get_key(key, &k, &n) < 0)
        return NULL;
    long idx = find_entry(c, k, n);
    if (idx >= 0 && settle(c, &c->ents[idx]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* forget(): forget every flow at once, unsettled counts included (FlowTable.flush settles
 * first); the duplicate window is kept. The Flow references are dropped last, after the
 * tables are empty, since dropping one may run Python code. */
static PyObject *Core_forget(Core *c, PyObject *unused) {
    size_t n = c->n_ents;
    Entry *old = c->ents;
    Entry *fresh = PyMem_Calloc(256, sizeof(Entry));
    if (!fresh)
        return PyErr_NoMemory();
    memset(c->slots, 0, c->cap * sizeof(Slot));
    c->used = 0;
    c->ents = fresh;
    c->ents_cap = 256;
    c->n_ents = 0;
    c->free_head = 0;
    c->n_dirty = 0;
    for (size_t i = 0; i < n; i++)
        Py_XDECREF(old[i].flow);
    PyMem_Free(old);
    Py_RETURN_NONE;
}

static PyObject *Core_settle_all(Core *c, PyObject *unused) {
    for (size_t i = 0; i < c->n_dirty; i++)
        if (settle(c, &c->ents[c->dirty[i]]) < 0)
            return NULL;
    c->n_dirty = 0;
    Py_RETURN_NONE;
}

/* The duplicate check: rotate the window at capture time ts, then whether sig was seen in
 * either generation; a new signature is remembered. 1: a duplicate, 0: new, -1: error. */
static int seen(Core *c, int64_t ts, const uint8_t *sig, size_t n) {
    if (ts >= c->rotate_at) {
        c->cur ^= 1;
        gen_clear(&c->gens[c->cur]);
        c->rotate_at = ts + c->window;
    }
    uint64_t h = hash_bytes(sig, n);
    if (gen_has(&c->gens[c->cur], h, sig, n) || gen_has(&c->gens[c->cur ^ 1], h, sig, n))
        return 1;
    return gen_add(&c->gens[c->cur], h, sig, n) < 0 ? -1 : 0;
}

static PyObject *Core_seen(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "seen(sig: bytes, ts_ns: int)");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (n > SIG_MAX) {
        PyErr_SetString(PyExc_ValueError, "signature too long");
        return NULL;
    }
    long long ts = as_ts(args[1]);
    if (ts == -1 && PyErr_Occurred())
        return NULL;
    int r = seen(c, ts, (const uint8_t *)PyBytes_AS_STRING(args[0]), (size_t)n);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *Core_take_duplicates(Core *c, PyObject *unused) {
    long long d = c->duplicates;
    c->duplicates = 0;
    return PyLong_FromLongLong(d);
}

static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* What the fast lane decoded of a frame. */
typedef struct {
    int proto; /* 6 or 17 */
    int sport, dport, flags, ttl;
    Py_ssize_t l4; /* offset of the TCP/UDP header */
    uint32_t seq;
    Py_ssize_t poff, plen;
    uint8_t key[KEY_MAX];
    size_t klen;
    uint8_t sig[SIG_MAX];
    size_t slen;
} Pkt;

/* decode()'s inline fast path (monitor/decode.py), field for field; 0 when the frame is not
 * of that shape (the Python handler decodes it, anomalies and all). The key and signature are
 * FlowTable's (monitor/flows.py: flow_key, signature). */
static int parse(const uint8_t *d, Py_ssize_t n, Pkt *p) {
    if (n < 54)
        return 0;
    int etype = d[12] << 8 | d[13];
    Py_ssize_t off = 14;
    if (etype == 0x8100) {
        etype = d[16] << 8 | d[17];
        off = 18;
    }
    Py_ssize_t l4, end;
    const uint8_t *src, *dst;
    size_t alen;
    uint32_t ip_id, ip_len;
    int proto;
    if (etype == 0x0800 && d[off] == 0x45) {
        ip_len = (uint32_t)(d[off + 2] << 8 | d[off + 3]);
        int fragf = d[off + 6] << 8 | d[off + 7];
        if (fragf & 0x3FFF || ip_len < 20)
            return 0;
        ip_id = (uint32_t)(d[off + 4] << 8 | d[off + 5]);
        proto = d[off + 9];
        p->ttl = d[off + 8];
        src = d + off + 12;
        dst = d + off + 16;
        alen = 4;
        l4 = off + 20;
        end = off + ip_len;
    } else if (etype == 0x86DD && d[off] >> 4 == 6 && n >= off + 48) {
        uint32_t plen = (uint32_t)(d[off + 4] << 8 | d[off + 5]);
        proto = d[off + 6];
        if (!plen || (proto != 6 && proto != 17))
            return 0;
        p->ttl = d[off + 7];
        src = d + off + 8;
        dst = d + off + 24;
        alen = 16;
        l4 = off + 40;
        end = l4 + plen;
        ip_id = 0;
        ip_len = 40 + plen;
    } else {
        return 0;
    }
    if (end > n)
        end = n;
    const uint8_t *h = d + l4;
    uint32_t csum;
    if (proto == 6) {
        if (end - l4 < 20)
            return 0;
        Py_ssize_t hlen = (h[12] >> 4) << 2;
        if (hlen < 20 || hlen > end - l4)
            return 0;
        p->flags = h[13];
        p->seq = be32(h + 4);
        p->poff = l4 + hlen;
        p->plen = end - l4 - hlen;
        memcpy(p->sig, h, 20);
        p->slen = 20;
    } else if (proto == 17) {
        if (end - l4 < 8)
            return 0;
        Py_ssize_t ulen = h[4] << 8 | h[5];
        if (ulen < 8 || ulen > end - l4)
            return 0;
        csum = (uint32_t)(h[6] << 8 | h[7]);
        p->flags = 0;
        p->seq = 0;
        p->poff = l4 + 8;
        p->plen = ulen - 8;
        /* b"\0" + src + !IIIIII (ip_id, ip_len, checksum, seq 0, ack 0, frag 0) */
        uint8_t *s = p->sig;
        s[0] = 0;
        memcpy(s + 1, src, alen);
        s += 1 + alen;
        put32(s, ip_id);
        put32(s + 4, ip_len);
        put32(s + 8, csum);
        memset(s + 12, 0, 12);
        p->slen = 1 + alen + 24;
    } else {
        return 0;
    }
    p->proto = proto;
    p->l4 = l4;
    p->sport = h[0] << 8 | h[1];
    p->dport = h[2] << 8 | h[3];
    memcpy(p->key, src, alen);
    memcpy(p->key + alen, dst, alen);
    memcpy(p->key + 2 * alen, h, 4);
    p->klen = 2 * alen + 4;
    if (proto == 17)
        p->key[p->klen++] = 0x11;
    return 1;
}

#define SYN 0x02
#define FIN 0x01
#define RST 0x04
#define ACK 0x10

/* A SYN-ACK from the server, as FlowTable._frame takes it: the server's ISN, and its traits to
 * the observer. The observer reads the traits of one sender, TTL, window and first option
 * bytes once per run (ObservationCollector.syn); a SYN-ACK whose key it was handed before is
 * not handed again (the key here holds the same fields, each with its length). */
static int synack(Core *c, PyObject *flow, PyObject *o_ts, const uint8_t *d, const Pkt *p) {
    PyObject *isn = PyLong_FromUnsignedLong(p->seq);
    if (!isn)
        return -1;
    int r = PyObject_SetAttr(flow, s_isn_server, isn);
    Py_DECREF(isn);
    if (r < 0 || !c->obs_syn)
        return r;
    if (!o_ts)
        return -1;
    uint8_t key[SIG_MAX];
    size_t alen = (p->klen - 4) / 2, k = 0;
    Py_ssize_t hl = p->poff - p->l4;
    size_t opt = hl > 24 ? 4 : hl > 20 ? (size_t)(hl - 20) : 0;
    key[k++] = (uint8_t)alen;
    memcpy(key + k, p->key, alen); /* the sender: the packet's source address */
    k += alen;
    key[k++] = (uint8_t)p->ttl;
    key[k++] = (uint8_t)(hl > 255 ? 255 : hl);
    memcpy(key + k, d + p->l4 + 14, 2); /* window */
    k += 2;
    memcpy(key + k, d + p->l4 + 20, opt);
    k += opt;
    uint64_t h = hash_bytes(key, k);
    if (gen_has(&c->syn_seen, h, key, k))
        return 0;
    Py_INCREF(flow);
    PyObject *ttl = PyLong_FromLong(p->ttl);
    PyObject *hdr = PyBytes_FromStringAndSize((const char *)d + p->l4, p->poff - p->l4);
    PyObject *res = NULL;
    if (ttl && hdr) {
        PyObject *cargs[5] = {flow, Py_False, o_ts, ttl, hdr};
        res = PyObject_Vectorcall(c->obs_syn, cargs, 5, NULL);
    }
    Py_XDECREF(ttl);
    Py_XDECREF(hdr);
    Py_DECREF(flow);
    if (!res)
        return -1;
    Py_DECREF(res);
    return gen_add(&c->syn_seen, h, key, k);
}
/* ---- records: a chunk's pcap records, unboxed ------------------------------------------ */

/* A frame being counted: its values, and its Python objects once something needs them. A
 * frame from a tuple borrows the tuple's objects (fr holds the tuple); a record of a Records
 * block has none until the Python lane or a callback asks (fr_ts, fr_objects), and they are
 * dropped with it: the fast lane makes no object for most packets. */
typedef struct {
    long long ts;
    long linktype, wirelen;
    const uint8_t *d;
    Py_ssize_t n;
    PyObject *o_ts, *o_lt, *o_data, *o_wl;
    PyObject *fr; /* the frame tuple (a strong reference), or NULL for a record */
} Fr;

static PyObject *fr_ts(Fr *f) {
    if (!f->o_ts)
        f->o_ts = PyLong_FromLongLong(f->ts);
    return f->o_ts;
}

static int fr_objects(Fr *f) {
    if (f->fr)
        return 0;
    if (!fr_ts(f))
        return -1;
    if (!f->o_lt && !(f->o_lt = PyLong_FromLong(f->linktype)))
        return -1;
    if (!f->o_data && !(f->o_data = PyBytes_FromStringAndSize((const char *)f->d, f->n)))
        return -1;
    if (!f->o_wl && !(f->o_wl = PyLong_FromLong(f->wirelen)))
        return -1;
    return 0;
}

static void fr_release(Fr *f) {
    if (f->fr) {
        Py_DECREF(f->fr);
        return;
    }
    Py_XDECREF(f->o_ts);
    Py_XDECREF(f->o_lt);
    Py_XDECREF(f->o_data);
    Py_XDECREF(f->o_wl);
}

/* Records: complete classic-pcap records of one chunk, as pcap_block() found them (made only
 * there, so they are known to be whole and within bounds). Core.run counts them straight from
 * the chunk; iterating gives the (ts_ns, linktype, data, wirelen) tuples, for everything
 * else. */
typedef struct {
    PyObject_HEAD
    PyObject *buf; /* bytes */
    Py_ssize_t start, stop, count;
    int big;
    long long frac, first_ts, last_ts, wirelen;
    long linktype;
} Records;

static inline uint32_t rd32(const uint8_t *q, int big) {
    return big ? ((uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3])
               : ((uint32_t)q[3] << 24 | (uint32_t)q[2] << 16 | (uint32_t)q[1] << 8 | q[0]);
}

/* The record at off of a Records block into f (no objects); returns the next offset. */
static Py_ssize_t record_at(const Records *r, Py_ssize_t off, Fr *f) {
    const uint8_t *h = (const uint8_t *)PyBytes_AS_STRING(r->buf) + off;
    uint32_t caplen = rd32(h + 8, r->big);
    f->ts = (long long)rd32(h, r->big) * 1000000000LL + (long long)rd32(h + 4, r->big) * r->frac;
    f->wirelen = (long)rd32(h + 12, r->big);
    f->linktype = r->linktype;
    f->d = h + 16;
    f->n = (Py_ssize_t)caplen;
    f->o_ts = f->o_lt = f->o_data = f->o_wl = NULL;
    f->fr = NULL;
    return off + 16 + (Py_ssize_t)caplen;
}

static void Records_dealloc(Records *r) {
    Py_XDECREF(r->buf);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static Py_ssize_t Records_len(Records *r) { return r->count; }

/* The records as (ts_ns, linktype, data, wirelen) tuples. */
static PyObject *records_list(Records *r) {
    PyObject *frames = PyList_New(r->count);
    if (!frames)
        return NULL;
    Py_ssize_t off = r->start;
    for (Py_ssize_t i = 0; i < r->count; i++) {
        Fr f;
        off = record_at(r, off, &f);
        if (fr_objects(&f) < 0) {
            fr_release(&f);
            Py_DECREF(frames);
            return NULL;
        }
        PyObject *t = PyTuple_Pack(4, f.o_ts, f.o_lt, f.o_data, f.o_wl);
        fr_release(&f);
        if (!t) {
            Py_DECREF(frames);
            return NULL;
        }
        PyList_SET_ITEM(frames, i, t);
    }
    return frames;
}

static PyObject *Records_iter(Records *r) {
    PyObject *frames = records_list(r);
    if (!frames)
        return NULL;
    PyObject *it = PyObject_GetIter(frames);
    Py_DECREF(frames);
    return it;
}

static PyObject *Records_first_ts(Records *r, void *unused) {
    return PyLong_FromLongLong(r->first_ts);
}

static PyObject *Records_last_ts(Records *r, void *unused) { return PyLong_FromLongLong(r->last_ts); }

static PyObject *Records_wirelen(Records *r, void *unused) { return PyLong_FromLongLong(r->wirelen); }

static PySequenceMethods Records_seq = {.sq_length = (lenfunc)Records_len};

static PyGetSetDef Records_getset[] = {
    {"first_ts", (getter)Records_first_ts, NULL, "capture time (ns) of the first record", NULL},
    {"last_ts", (getter)Records_last_ts, NULL, "capture time (ns) of the last record", NULL},
    {"wirelen", (getter)Records_wirelen, NULL, "the records' original lengths, summed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecordsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "monitor._flowcore.Records",
    .tp_basicsize = sizeof(Records),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A chunk's complete pcap records (pcap_block); iterating gives frame tuples.",
    .tp_dealloc = (destructor)Records_dealloc,
    .tp_as_sequence = &Records_seq,
    .tp_iter = (getiterfunc)Records_iter,
    .tp_getset = Records_getset,
};

/* One frame through the fast lane, or to the handler (the Python lane). Returns -1 on error,
 * 1 when the frame was counted into a flow (the caller may stop for its periodic work), else
 * 0 (a SPAN duplicate, or the handler said the frame did not reach the end). */
static int one_frame(Core *c, Fr *f, PyObject *handler, long long npk) {
    const uint8_t *d = f->d;
    long long ts = f->ts;
    long wirelen = f->wirelen;
    Pkt p;
    int parsed = f->linktype == 1 && parse(d, f->n, &p);
    long idx = -1;
    if (parsed) {
        int dup = seen(c, ts, p.sig, p.slen);
        if (dup < 0) {
            return -1;
        }
        if (dup) {
            c->duplicates++;
            return 0;
        }
        uint64_t h = hash_bytes(p.key, p.klen);
        long si = idx_find(c, h, p.key, p.klen);
        if (si >= 0) {
            uint32_t ref = c->slots[si].ref;
            idx = ref >> 1;
            int dir = ref & 1;
            Entry *e = &c->ents[idx];
            int64_t idle = ts - e->last_ns;
            /* A SYN goes to Python (a new connection on old ports, the client's ISN and
             * traits); a SYN-ACK is counted here, with the server's ISN and traits. */
            if (p.proto == 6 ? ((!(p.flags & SYN) || p.flags & ACK) && idle <= c->tcp_idle)
                             : idle <= c->udp_idle) {
                /* the fast lane: count it, hand on what a parser wants */
                e->last_ns = ts;
                e->pk[dir]++;
                e->by[dir] += wirelen;
                e->pl[dir] += p.plen;
                e->fl[dir] |= (uint8_t)p.flags;
                if (mark_dirty(c, (uint32_t)idx) < 0) {
                    return -1;
                }
                PyObject *flow = e->flow;
                if (p.proto == 6 && p.flags & SYN && dir == 1 &&
                    synack(c, flow, fr_ts(f), d, &p) < 0) {
                    return -1;
                }
                e = &c->ents[idx];
                if (p.proto == 6) {
                    if (e->byp_left[dir] && p.plen && p.plen <= e->byp_left[dir] &&
                        p.seq == e->byp_seq[dir] && !(p.flags & (FIN | SYN | RST))) {
                        /* the next bytes the analyzer skips anyway: counted only */
                        e->byp_seq[dir] += (uint32_t)p.plen;
                        e->byp_left[dir] -= p.plen;
                        e->byp_done[dir] += p.plen;
                    } else if (e->wants && c->stream_tcp && (p.plen || p.flags & FIN)) {
                        if ((e->byp_left[0] | e->byp_left[1] | e->byp_done[0] |
                             e->byp_done[1]) &&
                            report_bypass(c, e) < 0) {
                            return -1;
                        }
                        e = &c->ents[idx];
                        flow = e->flow;
                        Py_INCREF(flow);
                        PyObject *cargs[6];
                        cargs[0] = flow;
                        cargs[1] = dir ? Py_False : Py_True;
                        cargs[2] = fr_ts(f);
                        cargs[3] = PyLong_FromUnsignedLong(p.seq);
                        cargs[4] = PyLong_FromLong(p.flags);
                        cargs[5] = PyBytes_FromStringAndSize((const char *)d + p.poff,
                                                             p.plen);
                        PyObject *r = NULL;
                        if (cargs[2] && cargs[3] && cargs[4] && cargs[5])
                            r = PyObject_Vectorcall(c->stream_tcp, cargs, 6, NULL);
                        Py_XDECREF(cargs[3]);
                        Py_XDECREF(cargs[4]);
                        Py_XDECREF(cargs[5]);
                        if (!r) {
                            Py_DECREF(flow);
                            return -1;
                        }
                        Py_DECREF(r);
                        PyObject *st = PyObject_GetAttr(flow, s_stream);
                        Py_DECREF(flow);
                        if (!st) {
                            return -1;
                        }
                        if (st == Py_False) {
                            /* the entry may have moved: look it up again */
                            long j = find_entry(c, p.key, p.klen);
                            if (j >= 0)
                                c->ents[j].wants = 0;
                        }
                        Py_DECREF(st);
                    }
                } else if (c->obs_datagram &&
                           (c->udp_ports[p.dport >> 3] & (1 << (p.dport & 7)) ||
                            c->udp_ports[p.sport >> 3] & (1 << (p.sport & 7)))) {
                    Py_INCREF(flow);
                    PyObject *cargs[6];
                    cargs[0] = flow;
                    cargs[1] = dir ? Py_False : Py_True;
                    cargs[2] = fr_ts(f);
                    cargs[3] = PyLong_FromLong(p.sport);
                    cargs[4] = PyLong_FromLong(p.dport);
                    cargs[5] = PyBytes_FromStringAndSize((const char *)d + p.poff, p.plen);
                    PyObject *r = NULL;
                    if (cargs[2] && cargs[3] && cargs[4] && cargs[5])
                        r = PyObject_Vectorcall(c->obs_datagram, cargs, 6, NULL);
                    Py_XDECREF(cargs[3]);
                    Py_XDECREF(cargs[4]);
                    Py_XDECREF(cargs[5]);
                    int bad = r == NULL;
                    if (r && r != Py_None) {
                        PyObject *app = PyObject_GetAttr(flow, s_app);
                        if (!app)
                            bad = 1;
                        else {
                            if (app == Py_None && PyObject_SetAttr(flow, s_app, r) < 0)
                                bad = 1;
                            Py_DECREF(app);
                        }
                    }
                    Py_XDECREF(r);
                    Py_DECREF(flow);
                    if (bad) {
                        return -1;
                    }
                }
                return 1;
            }
            if (settle(c, e) < 0) {
                return -1;
            }
        }
    }
    /* the Python lane */
    if (fr_objects(f) < 0)
        return -1;
    PyObject *o_npk = PyLong_FromLongLong(npk);
    if (!o_npk)
        return -1;
    PyObject *hargs[6] = {f->o_ts, f->o_lt, f->o_data, f->o_wl, o_npk,
                          parsed ? Py_True : Py_False};
    PyObject *r = PyObject_Vectorcall(handler, hargs, 6, NULL);
    Py_DECREF(o_npk);
    if (!r)
        return -1;
    int reached = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (parsed) {
        long j = find_entry(c, p.key, p.klen);
        if (j >= 0 && refresh(&c->ents[j]) < 0) {
            return -1;
        }
    }
    return reached;
}

/* run(frames, handler, npk, nbytes, stop_at) -> (npk, nbytes, last_ts, more)
 *
 * Counts frames from the iterator ``frames`` ((ts_ns, linktype, data, wirelen) tuples, lists
 * of them, or Records blocks: CaptureReader.batches) until it ends (more=False) or, after a
 * frame that reached the end of the Python loop's body, npk reaches stop_at (more=True: the
 * caller does its periodic work and calls again; a list or block stopped inside is carried
 * on). ``handler(ts, linktype, data, wirelen, npk, checked) -> bool`` is FlowTable._frame,
 * called for every frame the fast lane leaves to Python; checked: the duplicate check was
 * done. */
static PyObject *Core_run(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "run(frames, handler, npk, nbytes, stop_at)");
        return NULL;
    }
    PyObject *it = args[0], *handler = args[1];
    long long npk = PyLong_AsLongLong(args[2]);
    long long nbytes = PyLong_AsLongLong(args[3]);
    long long stop_at = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "frames must be an iterator");
        return NULL;
    }
    iternextfunc next = Py_TYPE(it)->tp_iternext;
    int more = 0;
    long long last_ts = 0;
    for (;;) {
        Fr f;
        if (c->records) {
            Records *rs = (Records *)c->records;
            if (c->records_pos >= rs->stop) {
                Py_CLEAR(c->records);
                continue;
            }
            c->records_pos = record_at(rs, c->records_pos, &f);
        } else {
            PyObject *fr;
            if (c->batch) {
                if (c->batch_pos == PyList_GET_SIZE(c->batch)) {
                    Py_CLEAR(c->batch);
                    continue;
                }
                fr = Py_NewRef(PyList_GET_ITEM(c->batch, c->batch_pos++));
            } else {
                fr = next(it);
                if (!fr) {
                    if (PyErr_Occurred()) {
                        if (!PyErr_ExceptionMatches(PyExc_StopIteration))
                            goto error;
                        PyErr_Clear();
                    }
                    break;
                }
                if (PyList_CheckExact(fr)) { /* a batch of frames */
                    c->batch = fr;
                    c->batch_pos = 0;
                    continue;
                }
                if (Py_IS_TYPE(fr, &RecordsType)) { /* a block of records (pcap_block) */
                    c->records = fr;
                    c->records_pos = ((Records *)fr)->start;
                    continue;
                }
            }
            if (!PyTuple_CheckExact(fr) || PyTuple_GET_SIZE(fr) != 4) {
                Py_DECREF(fr);
                PyErr_SetString(PyExc_TypeError,
                                "a frame is a (ts_ns, linktype, data, wirelen) tuple");
                goto error;
            }
            f.fr = fr;
            f.o_ts = PyTuple_GET_ITEM(fr, 0);
            f.o_lt = PyTuple_GET_ITEM(fr, 1);
            f.o_data = PyTuple_GET_ITEM(fr, 2);
            f.o_wl = PyTuple_GET_ITEM(fr, 3);
            f.ts = as_ts(f.o_ts);
            f.wirelen = PyLong_AsLong(f.o_wl);
            f.linktype = PyLong_AsLong(f.o_lt);
            if (PyErr_Occurred() || !PyBytes_Check(f.o_data)) {
                Py_DECREF(fr);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "frame data must be bytes");
                goto error;
            }
            f.d = (const uint8_t *)PyBytes_AS_STRING(f.o_data);
            f.n = PyBytes_GET_SIZE(f.o_data);
        }
        npk++;
        nbytes += f.wirelen;
        last_ts = f.ts;
        int r = one_frame(c, &f, handler, npk);
        fr_release(&f);
        if (r < 0)
            goto error;
        if (r && npk >= stop_at) {
            more = 1;
            break;
        }
    }
    return Py_BuildValue("LLLO", npk, nbytes, last_ts, more ? Py_True : Py_False);
error:
    /* an abandoned run: its frames are not carried into the next */
    Py_CLEAR(c->batch);
    Py_CLEAR(c->records);
    return NULL;
}

static PyMethodDef Core_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Core_run, METH_FASTCALL,
     "run(frames, handler, npk, nbytes, stop_at) -> (npk, nbytes, last_ts, more)"},
    {"add", (PyCFunction)(void (*)(void))Core_add, METH_FASTCALL,
     "add(ckey, skey, flow, last_ns): a flow started"},
    {"remove", (PyCFunction)(void (*)(void))Core_remove, METH_FASTCALL,
     "remove(ckey, skey): a flow ended (its pending counts are settled first)"},
    {"bypass", (PyCFunction)(void (*)(void))Core_bypass, METH_FASTCALL,
     "bypass(key, from_client, seq, nbytes): count the direction's next payload bytes only"},
    {"settle", (PyCFunction)Core_settle, METH_O,
     "settle(key): write the pending counts of key's flow into its Flow"},
    {"forget", (PyCFunction)Core_forget, METH_NOARGS,
     "forget(): forget every flow at once (the end of input, after settle_all)"},
    {"settle_all", (PyCFunction)Core_settle_all, METH_NOARGS,
     "settle_all(): write every flow's pending counts into its Flow"},
    {"seen", (PyCFunction)(void (*)(void))Core_seen, METH_FASTCALL,
     "seen(sig, ts_ns) -> bool: the duplicate check of a frame the fast lane did not decode"},
    {"take_duplicates", (PyCFunction)Core_take_duplicates, METH_NOARGS,
     "take_duplicates() -> int: duplicates the fast lane dropped since the last call"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "monitor._flowcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The flow table's fast lane (see the module docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
};


/* The complete classic-pcap records of buf from off, as a Records block; *off_out: the end of
 * the last complete record; *absurd: the captured length of the record there when it is above
 * max_caplen (reading stops there), else -1. */
static PyObject *scan_records(PyObject *const *args, Py_ssize_t nargs, const char *usage,
                              Py_ssize_t *off_out, long long *absurd) {
    if (nargs != 6 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    const uint8_t *b = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    int big = PyObject_IsTrue(args[2]);
    long long frac = PyLong_AsLongLong(args[3]);
    long linktype = PyLong_AsLong(args[4]);
    long max_caplen = PyLong_AsLong(args[5]);
    if (PyErr_Occurred() || big < 0)
        return NULL;
    if (off < 0 || off > n) {
        PyErr_SetString(PyExc_ValueError, "offset outside the buffer");
        return NULL;
    }
    Records *r = PyObject_New(Records, &RecordsType);
    if (!r)
        return NULL;
    r->buf = Py_NewRef(args[0]);
    r->start = off;
    r->count = 0;
    r->big = big;
    r->frac = frac;
    r->linktype = linktype;
    r->first_ts = r->last_ts = r->wirelen = 0;
    *absurd = -1;
    while (off + 16 <= n) {
        const uint8_t *h = b + off;
        uint32_t caplen = rd32(h + 8, big);
        if (caplen > (uint32_t)max_caplen) {
            *absurd = caplen;
            break;
        }
        Py_ssize_t stop = off + 16 + (Py_ssize_t)caplen;
        if (stop > n)
            break;
        r->last_ts = (long long)rd32(h, big) * 1000000000LL + (long long)rd32(h + 4, big) * frac;
        if (!r->count++)
            r->first_ts = r->last_ts;
        r->wirelen += rd32(h + 12, big);
        off = stop;
    }
    r->stop = off;
    *off_out = off;
    return (PyObject *)r;
}

/* pcap_block(buf, off, big_endian, frac, linktype, max_caplen) -> (records, off, absurd)
 *
 * The complete classic-pcap records of buf from off, left in buf: a Records block that
 * Core.run counts without a Python object per frame (CaptureReader.batches). off: the end of
 * the last complete record; absurd: the captured length of the record at off when it is above
 * max_caplen (reading stops there), else -1. */
static PyObject *pcap_block(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t off;
    long long absurd;
    PyObject *r = scan_records(
        args, nargs, "pcap_block(buf: bytes, off, big_endian, frac, linktype, max_caplen)", &off,
        &absurd);
    return r ? Py_BuildValue("NnL", r, off, absurd) : NULL;
}

/* pcap_records(buf, off, big_endian, frac, linktype, max_caplen) -> (frames, off, absurd)
 *
 * As pcap_block, but the records as the frames CaptureReader yields: (ts_ns, linktype, data,
 * wirelen) with ts_ns = seconds * 10**9 + fraction * frac. monitor/source.py's loop does the
 * same in Python when this module is not built; this is its per-record work without the
 * interpreter (about a third of a replay's reading time). */
static PyObject *pcap_records(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t off;
    long long absurd;
    PyObject *r = scan_records(
        args, nargs, "pcap_records(buf: bytes, off, big_endian, frac, linktype, max_caplen)",
        &off, &absurd);
    if (!r)
        return NULL;
    PyObject *frames = records_list((Records *)r);
    Py_DECREF(r);
    return frames ? Py_BuildValue("NnL", frames, off, absurd) : NULL;
}

static PyMethodDef module_methods[] = {
    {"pcap_block", (PyCFunction)(void (*)(void))pcap_block, METH_FASTCALL,
     "pcap_block(buf, off, big_endian, frac, linktype, max_caplen) -> (records, off, absurd)"},
    {"pcap_records", (PyCFunction)(void (*)(void))pcap_records, METH_FASTCALL,
     "pcap_records(buf, off, big_endian, frac, linktype, max_caplen) -> (frames, off, absurd)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._flowcore",
    "The flow table's per-packet fast lane in C; see monitor/flows.py.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__flowcore(void) {
#define INTERN(var, text)                                                                      \
    if (!(var = PyUnicode_InternFromString(text)))                                             \
        return NULL;
    INTERN(s_pts, "packets_to_server");
    INTERN(s_ptc, "packets_to_client");
    INTERN(s_bts, "bytes_to_server");
    INTERN(s_btc, "bytes_to_client");
    INTERN(s_lts, "payload_to_server");
    INTERN(s_ltc, "payload_to_client");
    INTERN(s_fc, "flags_client");
    INTERN(s_fs, "flags_server");
    INTERN(s_last, "last_ns");
    INTERN(s_stream, "stream");
    INTERN(s_app, "app");
    INTERN(s_isn_server, "isn_server");
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&RecordsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObjectRef(m, "Records", (PyObject *)&RecordsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
