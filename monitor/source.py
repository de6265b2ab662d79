"""Capture sources: the first stage of the pipeline.

Reads pcap and pcapng captures (also gzip-compressed), directories of them and standard input,
and yields raw frames as plain tuples ``(ts_ns, linktype, data, wirelen)``. Nothing below this
module knows where a frame came from.

Formats
=======

pcap: draft-ietf-opsawg-pcap (the libpcap file format). A 24-byte file header, then records.
The byte order is that of the writer, told by the magic number::

    File header                          Record header (then CapLen bytes of data)
    off size field                       off size field
      0   4  magic a1b2c3d4 (us)           0   4  timestamp seconds (unsigned)
             or a1b23c4d (ns)              4   4  microseconds, or nanoseconds
      4   2  major version (2)             8   4  CapLen: captured length
      6   2  minor version (4)            12   4  original (wire) length
      8   4  reserved (thiszone)
     12   4  reserved (sigfigs)
     16   4  SnapLen (ignored for reading)
     20   4  FCS bits 31-28, reserved, LinkType in bits 15-0

pcapng: draft-ietf-opsawg-pcapng. A sequence of blocks, all with the same frame; a file is
one or more sections, each opened by a Section Header Block that sets the byte order of the
section::

    General block                        Section Header Block (SHB, type 0x0a0d0d0a)
    off size field                       off size field
      0   4  block type                    8   4  byte-order magic 0x1a2b3c4d
      4   4  block total length           12   2  major version (1)
      8   .  body, padded to 32 bits      14   2  minor version
    L-4   4  block total length again     16   8  section length (-1: unknown)
                                          24   .  options

    Interface Description Block (IDB, type 1)    Enhanced Packet Block (EPB, type 6)
    off size field                               off size field
      8   2  LinkType                              8   4  interface ID
     10   2  reserved                             12   4  timestamp, upper 32 bits
     12   4  SnapLen                              16   4  timestamp, lower 32 bits
     16   .  options: if_tsresol (9, 1 byte),     20   4  captured length
             if_tsoffset (14, 8 bytes, seconds)   24   4  original length
                                                  28   .  packet data, then options

    Simple Packet Block (SPB, type 3)            Packet Block (type 2, obsolete)
    off size field                               off size field
      8   4  original length                       8   2  interface ID
     12   .  packet data (interface 0;            10   2  drops count
             captured length = min(original,      12   8  timestamp (as in the EPB)
             SnapLen of interface 0, room)        20   4  captured length
                                                  24   4  original length
                                                  28   .  packet data, then options

Interface IDs restart at 0 in every section. Timestamps are counted in units of if_tsresol
(default 10^-6 s; high bit set means a negative power of 2) plus if_tsoffset seconds, and are
converted here to integer UTC nanoseconds exactly (integer arithmetic, rounding down).
A Simple Packet Block has no timestamp: it gets the timestamp of the previous packet of its
section, or 0 when it is the first packet of the section. Every other block type (name
resolution, interface statistics, decryption secrets, custom, unknown) is skipped by its length.

gzip (RFC 1952) is recognised by its magic ``1f 8b``, not by the file name, and is
decompressed as a stream. Offsets in warnings count bytes of the uncompressed capture.

Damage
======

A file that cannot be read at all (missing, unreadable, empty, unknown magic, cut inside its
file header) raises :class:`CaptureError` when the reader is created. Damage found later stops
the file with a one-line warning ``'<path>: <problem>'`` in ``FileStats.warnings``; every
frame before the damage has been yielded. Damage is: a truncated last record or block, a pcap
captured length above ``MAX_CAPLEN``, a pcapng block whose total length is not a multiple of
4, below its type's minimum, above ``MAX_BLOCK`` or unlike its trailing copy, packet data
overrunning its block, an undescribed interface, a truncated or corrupt gzip stream, a read
error.

Files are read in chunks of ``CHUNK`` bytes (the incomplete tail is carried to the next
chunk), so memory stays bounded for any file size, and stdin, pipes and gzip streams are read
the same way as plain files.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import heapq
import math
import os
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any, BinaryIO

from monitor import native_core

__all__ = [
    "CaptureError",
    "CaptureReader",
    "FileStats",
    "Frame",
    "expand_paths",
    "file_digest",
    "merge_frames",
]

Frame = tuple[int, int, bytes, int]
"""(ts_ns: UTC nanoseconds since the epoch, linktype, captured bytes, original wire length)."""

# --- wire constants -------------------------------------------------------------------------

PCAP_MAGIC_US = 0xA1B2C3D4  #: pcap, microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D  #: pcap, nanosecond timestamps
PCAPNG_SHB = 0x0A0D0D0A  #: pcapng Section Header Block type (a palindrome in both byte orders)
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
GZIP_MAGIC = b"\x1f\x8b"

BT_IDB = 1  #: Interface Description Block
BT_PB = 2  #: Packet Block (obsolete)
BT_SPB = 3  #: Simple Packet Block
BT_EPB = 6  #: Enhanced Packet Block

OPT_ENDOFOPT = 0
IF_TSRESOL = 9
IF_TSOFFSET = 14

_LE_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "pcap",
    b"\x4d\x3c\xb2\xa1": "pcap-ns",
}
_BE_MAGICS = {
    b"\xa1\xb2\xc3\xd4": "pcap",
    b"\xa1\xb2\x3c\x4d": "pcap-ns",
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_CAPTURE_MAGICS = frozenset([*_LE_MAGICS, *_BE_MAGICS, _PCAPNG_MAGIC])

# --- limits ---------------------------------------------------------------------------------

MAX_CAPLEN = 262_144
"""Largest believable captured length of one pcap record (Wireshark's and tcpdump's maximum
snapshot length; a 64 KiB TSO/GRO super-frame fits). A larger one means the file is damaged."""
MAX_BLOCK = 16 << 20
"""Largest believable pcapng block (16 MiB). A larger total length means the file is damaged."""
CHUNK = 120 << 10
"""Bytes asked of the file per read (more when one record needs more). Kept under glibc's
default mmap threshold (128 KiB) on purpose: a freed buffer is then reused by the next read,
whereas 1-4 MiB buffers are returned to the kernel and faulted in again on every read
(measured: 100,000 page faults and 40% less throughput on a 460 MB capture)."""

# --- precompiled layouts ----------------------------------------------------------------------

_PCAP_HDR = {e: struct.Struct(e + "IHHiIII") for e in "<>"}
_PCAP_REC = {e: struct.Struct(e + "IIII").unpack_from for e in "<>"}
# EPB header read in one go: type, total length, interface, ts high, ts low, caplen, origlen.
_NG_EPB = {e: struct.Struct(e + "IIIIIII").unpack_from for e in "<>"}
_NG_BLOCK = {e: struct.Struct(e + "II").unpack_from for e in "<>"}
_NG_U32 = {e: struct.Struct(e + "I").unpack_from for e in "<>"}
_NG_PB = {e: struct.Struct(e + "HHIIII").unpack_from for e in "<>"}
_NG_IDB = {e: struct.Struct(e + "HHI").unpack_from for e in "<>"}
_NG_SHB_VERSION = {e: struct.Struct(e + "HH").unpack_from for e in "<>"}
_NG_OPT = {e: struct.Struct(e + "HH").unpack_from for e in "<>"}
_NG_I64 = {e: struct.Struct(e + "q").unpack_from for e in "<>"}

_BOM_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_MIN_BLOCK = {PCAPNG_SHB: 28, BT_IDB: 20, BT_PB: 32, BT_SPB: 16, BT_EPB: 32}

_NS = 1_000_000_000
#: The C record loop (monitor/_flowcore.c pcap_records), or None.
_flowcore = native_core()


class CaptureError(Exception):
    """A capture that cannot be read at all. ``str(e)`` is one line: ``'<path>: <reason>'``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[CaptureError], tuple[str, str]]:
        return (CaptureError, (self.path, self.reason))


@dataclass
class FileStats:
    """What was read from one capture; filled in while its frames are yielded."""

    path: str  #: as given, or as found in a directory; '-' for stdin
    sha256: str = ""  #: hex of the bytes on disk (.gz bytes if gzip); stdin: of bytes read
    size: int = 0  #: bytes on disk (bytes read for stdin)
    format: str = ""  #: 'pcap' | 'pcap-ns' | 'pcapng', with '.gz' appended when gzip-compressed
    packets: int = 0  #: frames yielded
    bytes: int = 0  #: sum of captured lengths yielded
    first_ts_ns: int | None = None  #: timestamp of the first frame yielded
    last_ts_ns: int | None = None  #: timestamp of the last frame yielded (file order, not max)
    linktypes: set[int] = field(default_factory=set)  #: link types of the frames yielded
    warnings: list[str] = field(default_factory=list)  #: '<path>: <damage>' found mid-file
    error: str | None = None  #: the CaptureError message when the file could not be read


class _LazyDigestStats(FileStats):
    """FileStats of a regular file: ``sha256`` is computed by :func:`file_digest` when first
    read (it is cached, so a caller that already hashed the file pays nothing)."""

    _sha256: str | None = None

    @property
    def sha256(self) -> str:
        if not self._sha256:
            try:
                self._sha256 = file_digest(self.path)
            except OSError:
                return ""
        return self._sha256

    @sha256.setter
    def sha256(self, value: str) -> None:
        self._sha256 = value


def _os_reason(exc: OSError) -> str:
    """A short lower-case reason for an OSError ('no such file or directory', ...)."""
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return text[:1].lower() + text[1:]


@lru_cache(maxsize=4096)
def _digest_cached(path: str, _identity: tuple[int, int, int, int]) -> str:
    # Large reads into one reused buffer: the hash runs on a background thread while the
    # capture replays, and hashlib and readinto release the GIL once per chunk. 16 MiB chunks
    # make those hand-overs rare (256 KiB ones cost the replay ~15% of its speed).
    h = hashlib.sha256()
    buf = bytearray(_DIGEST_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


_DIGEST_CHUNK = 1 << 24


def file_digest(path: str | os.PathLike[str]) -> str:
    """Return the sha256 hex digest of a regular file, read in chunks.

    The result is cached by the file's identity (device, inode, size, mtime), so hashing a
    capture before reading it (to skip one already recorded) and asking the reader's
    ``stats.sha256`` afterwards reads the file once. Raises ``OSError`` when the file cannot
    be read (``FileNotFoundError``, ``PermissionError``, ...), also for a directory
    (``IsADirectoryError``) and for a pipe or device (``EINVAL``, 'not a regular file': hashing
    it would consume it; its reader hashes what it reads instead).
    """
    p = os.fspath(path)
    st = os.stat(p)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", p)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", p)
    return _digest_cached(p, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


# --- byte streams -----------------------------------------------------------------------------


class _HashingStream:
    """A non-seekable byte stream (stdin, a pipe) that hashes and counts what is read.

    ``peek`` keeps the bytes it reads and hands them out again, so the magic can be looked at
    without seeking. ``read`` returns what one read of the stream gives (``read1`` when the
    stream has it), so frames flow as they arrive. ``digest=False``: no hashing (a live
    capture's pipe identifies nothing, and hashing 100 MB/s costs a tenth of a core).
    """

    def __init__(self, raw: BinaryIO, digest: bool = True) -> None:
        self._read: Callable[[int], bytes] = getattr(raw, "read1", raw.read)
        self._pending = b""
        self.hasher = hashlib.sha256() if digest else None
        self.nread = 0

    def _fill(self, n: int) -> bytes:
        data = self._read(n)
        if not data:
            return b""
        data = bytes(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.nread += len(data)
        return data

    def read(self, n: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return self._fill(n)

    def peek(self, n: int) -> bytes:
        """Return up to ``n`` first bytes (fewer only at end of stream) without consuming."""
        while len(self._pending) < n:
            more = self._fill(n - len(self._pending))
            if not more:
                break
            self._pending += more
        return self._pending[:n]


class _Gunzip:
    """Streaming gzip decompression (RFC 1952; members may be concatenated, zero padding after
    the last is allowed, as gzip(1) writes and reads them).

    ``read(n)`` returns what it has as soon as it has some, so that nothing decompressed is
    lost when the compressed stream turns out to be truncated (``EOFError``) or corrupt
    (``zlib.error``, ``gzip.BadGzipFile``).
    """

    def __init__(self, raw_read: Callable[[int], bytes]) -> None:
        self._raw_read = raw_read
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._in = b""

    def read(self, n: int) -> bytes:
        while True:
            if self._d.eof:  # after a member: the end, zero padding, or another member
                self._in = self._in.lstrip(b"\0")
                if len(self._in) < 2:
                    more = self._raw_read(CHUNK)
                    if not more:
                        if self._in:
                            raise gzip.BadGzipFile("trailing garbage after the compressed data")
                        return b""
                    self._in += more
                    continue
                if self._in[:2] != GZIP_MAGIC:
                    raise gzip.BadGzipFile("trailing garbage after the compressed data")
                self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            if not self._in:
                self._in = self._raw_read(CHUNK)
                if not self._in:
                    raise EOFError("compressed data ends early")
            out = self._d.decompress(self._in, n)
            self._in = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
            if out:
                return out


def _read_full(read: Callable[[int], bytes], n: int) -> bytes:
    """Read ``n`` bytes, fewer only at end of stream (short reads are retried)."""
    data = read(n)
    while len(data) < n:
        more = read(n - len(data))
        if not more:
            break
        data += more
    return data


# What reading a file, a stream or a gzip stream raises: OSError (EIO, ...), EOFError (gzip
# cut short), zlib.error and gzip.BadGzipFile (corrupt gzip), ValueError (a closed stream).
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def _read_error_reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "gzip stream is truncated (compressed data ends early)"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"gzip stream is corrupt ({exc})"
    if isinstance(exc, OSError):
        return f"read error ({_os_reason(exc)})"
    return f"read error ({exc})"


# --- the reader -------------------------------------------------------------------------------


class CaptureReader:
    """Reads one capture: a path, or '-' for standard input (or the ``stdin`` stream given).

    gzip is detected by its magic ``1f 8b``, not by the name. Creating the reader opens the
    file and reads its header; it raises :class:`CaptureError` when the file cannot be opened
    or is not a capture (empty file, unknown magic: the message says what was found, e.g.
    ``'x.pcap: not a pcap or pcapng file (starts with 0x3c3f786d)'``).

    Iterating yields :data:`Frame` tuples once (a second iteration yields nothing) and keeps
    :attr:`stats` up to date; damage found mid-file ends the iteration with a warning in
    ``stats.warnings`` instead of an exception. The file is closed when the iteration ends or
    is abandoned, or by :meth:`close`. ``stats.sha256`` of a regular file is computed on first
    access with :func:`file_digest`; a stream's is that of the bytes read so far (none with
    ``digest=False``).
    """

    stats: FileStats
    _iter: Callable[[], Iterator[Frame]]
    _read: Callable[[int], bytes]
    _head: bytes
    _offset: int
    _endian: str
    _linktype: int
    _gz: bool

    def __init__(self, path: str, *, stdin: BinaryIO | None = None, digest: bool = True) -> None:
        self.path = path
        self._digest = digest
        self._closers: list[Callable[[], object]] = []
        self._started = False
        self._stream: _HashingStream | None = None
        self._read_failed = False
        try:
            self._open(path, stdin)
        except CaptureError:
            self.close()
            raise

    # -- opening --

    def _fail(self, reason: str) -> CaptureError:
        return CaptureError(self.path, reason)

    def _open(self, path: str, stdin: BinaryIO | None) -> None:
        raw_read: Callable[[int], bytes]
        if path == "-":
            src = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
            if src is None:
                raise self._fail("no standard input")
            stream = _HashingStream(src, self._digest)
            self._stream = stream
            stats: FileStats = FileStats(path=path)
            self.stats = stats
            try:
                head = stream.peek(4)
            except _READ_ERRORS as exc:
                raise self._fail(_read_error_reason(exc)) from None
            raw_read = stream.read
        else:
            try:
                f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise self._fail(_os_reason(exc)) from None
            self._closers.append(f.close)
            try:
                st = os.fstat(f.fileno())
                if stat.S_ISDIR(st.st_mode):
                    raise self._fail("is a directory")
                if stat.S_ISREG(st.st_mode):
                    stats = _LazyDigestStats(path=path, size=st.st_size)
                    head = f.read(4)
                    f.seek(0)
                    raw_read = f.read
                else:  # a FIFO or device: read it as a stream, hashing as we go
                    stream = _HashingStream(f, self._digest)
                    self._stream = stream
                    stats = FileStats(path=path)
                    head = stream.peek(4)
                    raw_read = stream.read
            except OSError as exc:
                raise self._fail(_os_reason(exc)) from None
        self.stats = stats
        if not head:
            raise self._fail("empty file")

        self._gz = head[:2] == GZIP_MAGIC
        read = raw_read
        if self._gz:
            read = _Gunzip(raw_read).read
        self._read = read
        try:
            magic = _read_full(read, 4)
        except _READ_ERRORS as exc:
            raise self._fail(_read_error_reason(exc)) from None
        if not magic:
            raise self._fail("empty file (the gzip stream holds no data)")
        suffix = ".gz" if self._gz else ""
        if magic in _LE_MAGICS or magic in _BE_MAGICS:
            self._endian = "<" if magic in _LE_MAGICS else ">"
            fmt = _LE_MAGICS.get(magic) or _BE_MAGICS[magic]
            try:
                rest = _read_full(read, 20)
            except _READ_ERRORS as exc:
                raise self._fail(_read_error_reason(exc)) from None
            if len(rest) < 20:
                raise self._fail(
                    f"file ends inside the pcap file header ({4 + len(rest)} of 24 bytes)"
                )
            *_, lt_field = _PCAP_HDR[self._endian].unpack(magic + rest)
            self._linktype = lt_field & 0xFFFF
            self._head = b""
            self._offset = 24
            self._iter = self._iter_pcap
        elif magic == _PCAPNG_MAGIC:
            fmt = "pcapng"
            try:
                rest = _read_full(read, 8)
            except _READ_ERRORS as exc:
                raise self._fail(_read_error_reason(exc)) from None
            if len(rest) < 8:
                raise self._fail(
                    f"file ends inside the pcapng section header ({4 + len(rest)} of 12 bytes)"
                )
            bom = rest[4:8]
            if bom not in _BOM_ORDER:
                raise self._fail(f"pcapng section header has a bad byte-order magic 0x{bom.hex()}")
            blen = _NG_U32[_BOM_ORDER[bom]](rest, 0)[0]
            if blen % 4 or blen < 28 or blen > MAX_BLOCK:
                raise self._fail(f"pcapng section header has a bad total length {blen}")
            self._head = magic + rest
            self._offset = 0
            self._iter = self._iter_pcapng
        else:
            inside = " inside the gzip stream" if self._gz else ""
            raise self._fail(f"not a pcap or pcapng file{inside} (starts with 0x{magic.hex()})")
        stats.format = fmt + suffix
        self._sync_stream_stats()

    def _sync_stream_stats(self) -> None:
        if self._stream is not None:
            self.stats.size = self._stream.nread
            if self._stream.hasher is not None:
                self.stats.sha256 = self._stream.hasher.hexdigest()

    # -- iteration --

    def __iter__(self) -> Iterator[Frame]:
        """Yield the capture's frames in file order (once)."""
        if self._started:
            return iter(())
        self._started = True
        return self._iter()

    def batches(self) -> Iterator[Frame | Iterable[Frame]]:
        """The capture's frames (once), a chunk's records at a time as a
        :class:`monitor._flowcore.Records` block where the C record loop reads them (classic
        pcap), one by one otherwise: the flow table takes both (see
        :meth:`monitor.flows.FlowTable.process`), without a generator step or an object per
        frame. A block counts as yielded whole in :attr:`stats`, even when the consumer
        stops inside it."""
        if self._started:
            return iter(())
        self._started = True
        if self._iter == self._iter_pcap and _flowcore is not None:
            return self._iter_pcap(batched=True)
        return self._iter()

    def close(self) -> None:
        """Close the file (idempotent). Iterating afterwards yields nothing."""
        self._started = True
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            with contextlib.suppress(OSError, EOFError, zlib.error):
                close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _warn(self, message: str) -> None:
        self.stats.warnings.append(f"{self.path}: {message}")

    def _read_chunk(self, size: int) -> bytes:
        """Read the next chunk; a read error or broken gzip stream is a warning and ends it."""
        try:
            return self._read(size)
        except _READ_ERRORS as exc:
            self._read_failed = True
            self._warn(_read_error_reason(exc) + f"; kept {self.stats.packets} packets")
            return b""

    def _iter_pcap(self, batched: bool = False) -> Iterator[Any]:
        """pcap records, read chunk by chunk. The hot loop of the whole pipeline: per record
        one unpack, one slice, one tuple; the counters are settled once per chunk.
        ``batched`` (only with the C record loop): each chunk's records as one
        :class:`monitor._flowcore.Records` block, which the fast lane counts where they lie
        in the chunk, without an object per frame (iterating it gives the frames)."""
        stats = self.stats
        rec = _PCAP_REC[self._endian]
        linktype = self._linktype
        frac = 1 if stats.format.startswith("pcap-ns") else 1000
        max_caplen = MAX_CAPLEN
        ns = _NS
        read_chunk = self._read_chunk
        need = 0  # bytes still missing of a record begun in buf
        buf = b""
        base = self._offset  # file offset of buf[0]
        n = 0  # frames yielded
        n0 = 0  # frames yielded before this chunk
        nbytes = 0  # captured bytes of the frames yielded before this chunk
        ts = 0
        off = 0  # end of the last record yielded from this chunk
        records = _flowcore.pcap_records if _flowcore is not None else None
        block = _flowcore.pcap_block if _flowcore is not None else None
        big = self._endian == ">"
        batch: list[Frame] = []  # the C loop's records of this chunk, while they are yielded
        try:
            while True:
                data = read_chunk(need if need > CHUNK else CHUNK)
                if not data:
                    if buf and not self._read_failed:
                        self._warn(
                            f"truncated record at offset {base} (file ends inside it); "
                            f"kept {n} packets"
                        )
                    return
                buf = buf + data if buf else data
                lim = len(buf)
                end = lim - 16
                off = 0
                if records is not None:  # the same loop, in C (monitor/_flowcore.c)
                    if batched and block is not None:
                        # The chunk's records, left where they are for the fast lane.
                        recs, stop, absurd = block(buf, 0, big, frac, linktype, max_caplen)
                        if recs:
                            n += len(recs)
                            ts = recs.last_ts
                            yield recs
                        del recs
                    else:
                        batch, stop, absurd = records(buf, 0, big, frac, linktype, max_caplen)
                        for frame in batch:
                            n += 1
                            yield frame
                        if batch:
                            ts = batch[-1][0]
                        batch = []
                    off = stop
                    if absurd >= 0:
                        self._warn(
                            f"record {n + 1} at offset {base + off}: captured length {absurd} "
                            "is absurd; stopped reading"
                        )
                        return
                    if off <= end:
                        stop = off + 16 + rec(buf, off)[2]
                while records is None and off <= end:
                    s, f, caplen, wirelen = rec(buf, off)
                    if caplen > max_caplen:
                        self._warn(
                            f"record {n + 1} at offset {base + off}: captured length {caplen} "
                            "is absurd; stopped reading"
                        )
                        return
                    start = off + 16
                    stop = start + caplen
                    if stop > lim:
                        break
                    ts = s * ns + f * frac
                    n += 1
                    off = stop
                    yield (ts, linktype, buf[start:stop], wirelen)
                need = stop - lim if off <= end else 0
                # settle this chunk: every record before `off` has been yielded
                if n > n0:
                    if n0 == 0:
                        s, f, _c, _w = rec(buf, 0)
                        stats.first_ts_ns = s * _NS + f * frac
                    nbytes += off - 16 * (n - n0)
                    n0 = n
                    stats.packets = n
                    stats.bytes = nbytes
                    stats.last_ts_ns = ts
                    stats.linktypes.add(linktype)
                self._sync_stream_stats()
                buf = buf[off:]
                base += off
                off = 0
        finally:
            # the same settling, for a chunk left early (damage, or the consumer stopped)
            if batch and n > n0:  # in the middle of the C loop's records
                off = sum(16 + len(frame[2]) for frame in batch[: n - n0])
                ts = batch[n - n0 - 1][0]
            if n > n0:
                if n0 == 0:
                    s, f, _c, _w = rec(buf, 0)
                    stats.first_ts_ns = s * _NS + f * frac
                stats.packets = n
                stats.bytes = nbytes + off - 16 * (n - n0)
                stats.last_ts_ns = ts
                stats.linktypes.add(linktype)
            self._sync_stream_stats()
            self.close()

    def _iter_pcapng(self) -> Iterator[Frame]:
        """pcapng blocks, read chunk by chunk; sections of either byte order.

        Enhanced Packet Blocks take a fast path (one unpack for the block header and packet
        header, one for the trailer); every check that fails sends the block to
        :meth:`_block_problem`, which names the damage.
        """
        stats = self.stats
        read_chunk = self._read_chunk
        linktypes_add = stats.linktypes.add
        max_block = MAX_BLOCK
        need = 0  # bytes still missing of a block begun in buf
        buf = self._head
        base = 0  # file offset of buf[0]
        e = "<"
        epb = _NG_EPB[e]
        u32 = _NG_U32[e]
        # Per interface of the current section: (linktype, mul, div, offset_ns, snaplen); a
        # timestamp in units converts to ns as units * mul // div + offset_ns.
        ifaces: list[tuple[int, int, int, int, int]] = []
        nif = 0
        ts = 0  # timestamp of the previous packet of the section (SPBs take it)
        last_ts: int | None = None  # of the last packet of the previous sections
        n = 0  # frames yielded
        n_section = 0  # frames yielded before the current section
        nbytes = 0
        off = 0
        try:
            while True:
                lim = len(buf)
                off = 0
                while lim - off >= 12:
                    if lim - off >= 28:
                        btype, blen, ifid, tsh, tsl, caplen, wirelen = epb(buf, off)
                        if btype == BT_EPB:
                            if blen & 3 or blen < 32 or blen > max_block:
                                break  # damage: diagnosed below
                            stop = off + blen
                            if stop > lim:
                                need = stop - lim
                                break  # the block continues in the next chunk
                            if u32(buf, stop - 4)[0] != blen or caplen > blen - 32 or ifid >= nif:
                                break  # damage: diagnosed below
                            linktype, mul, div, toff, _snap = ifaces[ifid]
                            if div == 1:
                                ts = ((tsh << 32) | tsl) * mul + toff
                            else:
                                ts = ((tsh << 32) | tsl) * mul // div + toff
                            n += 1
                            if n == 1:
                                stats.first_ts_ns = ts
                            nbytes += caplen
                            linktypes_add(linktype)
                            start = off + 28
                            off = stop
                            yield (ts, linktype, buf[start : start + caplen], wirelen)
                            continue
                    else:
                        btype, blen = _NG_BLOCK[e](buf, off)
                    # -- every other block, and any damage --
                    if btype == PCAPNG_SHB:
                        bom = buf[off + 8 : off + 12]
                        if bom not in _BOM_ORDER:
                            break  # damage: diagnosed below
                        e = _BOM_ORDER[bom]
                        epb = _NG_EPB[e]
                        u32 = _NG_U32[e]
                        blen = u32(buf, off + 4)[0]
                    if blen & 3 or blen < 12 or blen > max_block:
                        break  # damage: diagnosed below
                    stop = off + blen
                    if stop > lim:
                        need = stop - lim
                        break  # the block continues in the next chunk
                    if u32(buf, stop - 4)[0] != blen or btype == BT_EPB:
                        break  # damage (a sound EPB took the fast path): diagnosed below
                    if btype == BT_SPB:
                        if blen < 16 or not nif:
                            break  # damage: diagnosed below
                        linktype, _mul, _div, _toff, snaplen = ifaces[0]
                        wirelen = u32(buf, off + 8)[0]
                        caplen = min(wirelen, blen - 16)
                        if snaplen:
                            caplen = min(caplen, snaplen)
                        n += 1
                        if n == 1:
                            stats.first_ts_ns = ts
                        nbytes += caplen
                        linktypes_add(linktype)
                        start = off + 12
                        off = stop
                        yield (ts, linktype, buf[start : start + caplen], wirelen)
                        continue
                    if btype == BT_PB:
                        if blen < 32:
                            break  # damage: diagnosed below
                        ifid, _drops, tsh, tsl, caplen, wirelen = _NG_PB[e](buf, off + 8)
                        if caplen > blen - 32 or ifid >= nif:
                            break  # damage: diagnosed below
                        linktype, mul, div, toff, _snap = ifaces[ifid]
                        ts = ((tsh << 32) | tsl) * mul // div + toff
                        n += 1
                        if n == 1:
                            stats.first_ts_ns = ts
                        nbytes += caplen
                        linktypes_add(linktype)
                        start = off + 28
                        off = stop
                        yield (ts, linktype, buf[start : start + caplen], wirelen)
                        continue
                    if btype == BT_IDB:
                        if blen < 20:
                            break  # damage: diagnosed below
                        ifaces.append(self._parse_idb(buf, off, blen, e, base + off))
                        nif += 1
                    elif btype == PCAPNG_SHB:
                        if blen < 28 or _NG_SHB_VERSION[e](buf, off + 12)[0] != 1:
                            break  # damage: diagnosed below
                        if n > n_section:
                            last_ts = ts
                        n_section = n
                        ifaces = []
                        nif = 0
                        ts = 0
                    # every other block type is skipped by its length
                    off = stop
                # no complete block left in buf: is it damage, or does buf need more bytes?
                problem = self._block_problem(buf, off, e, nif) if lim - off >= 12 else None
                if problem is not None:
                    self._warn(f"block at offset {base + off}: {problem}; stopped reading")
                    return
                # settle, and read on
                stats.packets = n
                stats.bytes = nbytes
                stats.last_ts_ns = ts if n > n_section else last_ts
                self._sync_stream_stats()
                buf = buf[off:]
                base += off
                off = 0
                data = read_chunk(need if need > CHUNK else CHUNK)
                need = 0
                if not data:
                    if buf and not self._read_failed:
                        self._warn(
                            f"truncated block at offset {base} (file ends inside it); "
                            f"kept {n} packets"
                        )
                    return
                buf = buf + data if buf else data
        finally:
            stats.packets = n
            stats.bytes = nbytes
            stats.last_ts_ns = ts if n > n_section else last_ts
            self._sync_stream_stats()
            self.close()

    @staticmethod
    def _block_problem(buf: bytes, off: int, e: str, nif: int) -> str | None:
        """What is wrong with the block at ``buf[off]`` (at least 12 bytes there), or None when
        it is sound but continues beyond ``buf``. The slow path: run once per damaged file."""
        u32 = _NG_U32[e]
        btype, blen = _NG_BLOCK[e](buf, off)
        if btype == PCAPNG_SHB:
            bom = buf[off + 8 : off + 12]
            if bom not in _BOM_ORDER:
                return f"bad byte-order magic 0x{bom.hex()}"
            e = _BOM_ORDER[bom]
            u32 = _NG_U32[e]
            blen = u32(buf, off + 4)[0]
        minimum = _MIN_BLOCK.get(btype, 12)
        if blen > MAX_BLOCK:
            return f"total length {blen} is absurd"
        if blen & 3:
            return f"total length {blen} is not a multiple of 4"
        if blen < minimum:
            return f"total length {blen} is too small"
        if off + blen > len(buf):
            return None
        trailer = u32(buf, off + blen - 4)[0]
        if trailer != blen:
            return f"trailing length {trailer} does not match total length {blen}"
        if btype == PCAPNG_SHB:
            major, minor = _NG_SHB_VERSION[e](buf, off + 12)
            return f"unsupported pcapng version {major}.{minor}"
        if btype == BT_SPB:
            return "simple packet block before any interface description"
        if btype == BT_EPB:
            ifid, _tsh, _tsl, caplen, _len = _NG_EPB[e](buf, off)[2:]
            kind = "enhanced packet"
        else:  # BT_PB
            ifid, _drops, _tsh, _tsl, caplen, _len = _NG_PB[e](buf, off + 8)
            kind = "packet"
        if caplen > blen - 32:
            return f"{kind} data ({caplen} bytes) overruns the block ({blen} bytes)"
        if ifid >= nif:
            return f"interface {ifid} is not described in this section"
        return None  # pragma: no cover - every failed check above has its message

    def _parse_idb(
        self, buf: bytes, off: int, blen: int, e: str, offset: int
    ) -> tuple[int, int, int, int, int]:
        """An Interface Description Block -> (linktype, mul, div, offset_ns, snaplen)."""
        linktype, _reserved, snaplen = _NG_IDB[e](buf, off + 8)
        mul, div, toff = 1000, 1, 0  # default resolution 10^-6 s
        opt = _NG_OPT[e]
        p = off + 16
        end = off + blen - 4
        while p + 4 <= end:
            code, olen = opt(buf, p)
            p += 4
            if code == OPT_ENDOFOPT:
                break
            if p + olen > end:
                self._warn(
                    f"block at offset {offset}: interface option {code} overruns the block; "
                    "ignored the rest of its options"
                )
                break
            if code == IF_TSRESOL and olen >= 1:
                mul, div = _tsresol(buf[p])
            elif code == IF_TSOFFSET and olen >= 8:
                toff = _NG_I64[e](buf, p)[0] * _NS
            p += (olen + 3) & ~3
        return (linktype, mul, div, toff, snaplen)


def _tsresol(value: int) -> tuple[int, int]:
    """if_tsresol -> (mul, div) such that ns = units * mul // div (exact, reduced)."""
    exp = value & 0x7F
    if value & 0x80:  # negative power of 2
        mul, div = _NS, 1 << exp
    elif exp <= 9:
        return 10 ** (9 - exp), 1
    else:
        mul, div = 1, 10 ** (exp - 9)
    g = math.gcd(mul, div)
    return mul // g, div // g


# --- merging ----------------------------------------------------------------------------------


def merge_frames(readers: Sequence[CaptureReader]) -> Iterator[Frame]:
    """Yield all readers' frames merged in timestamp order.

    ``heapq.merge`` on ``ts_ns``: frames with equal timestamps keep the readers' order, and
    each reader's own order is kept (a file whose timestamps go backwards is not sorted). One
    reader gives its own iterator, with no heap overhead. Every reader is started at once, so
    each holds an open file and one read buffer (about ``CHUNK`` bytes) while merging; for
    many files use :class:`LazyMerge`.
    """
    if len(readers) == 1:
        return iter(readers[0])
    if not readers:
        return iter(())
    return heapq.merge(*readers, key=itemgetter(0))


class LazyMerge:
    """The frames of many captures in timestamp order, each capture opened only when the
    merge reaches its first frame and closed when it is used up.

    A directory of rotated captures (tcpdump -G/-C) holds thousands of files whose times do
    not overlap: opening them all at once would exhaust the open-file limit and hold one
    read buffer each. Here each file is opened once to read its first timestamp, then again
    when its turn comes; files that overlap in time are open together. Standard input
    (``-``) and pipes cannot be reopened, so they stay open from the start.

    ``readers`` lists every reader opened for the merge, in opening order, so that the
    caller can collect their :class:`FileStats` afterwards. ``errors`` holds the one-line
    :class:`CaptureError` messages of captures that could not be opened.
    """

    def __init__(self, paths: Sequence[str], *, stdin: BinaryIO | None = None) -> None:
        self.readers: list[CaptureReader] = []
        self.errors: list[str] = []
        self._stdin = stdin
        # (first timestamp, order, path, reader kept open or None)
        self._pending: list[tuple[int, int, str, CaptureReader | None]] = []
        for order, path in enumerate(paths):
            try:
                reader = CaptureReader(path, stdin=stdin if path == "-" else None)
            except CaptureError as e:
                self.errors.append(str(e))
                continue
            if path == "-" or not os.path.isfile(path):
                # stdin or a pipe (<(zcat ...)): it cannot be read twice, so it stays open
                self._pending.append((-1, order, path, reader))
                continue
            it = iter(reader)
            first = next(it, None)
            reader.close()
            if first is None:
                self.readers.append(reader)  # empty or damaged at once: its stats still count
            else:
                self._pending.append((first[0], order, path, None))

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Frame]:
        if len(self._pending) == 1:
            # One capture: its own iterator, without a generator in between (one frame
            # through two generators costs a tenth of the whole per-packet budget).
            reader = self._only_reader()
            return iter(reader) if reader is not None else iter(())
        return self._merge()

    def batches(self) -> Iterator[Frame | Iterable[Frame]]:
        """As iterating, but a single capture gives :meth:`CaptureReader.batches`."""
        if len(self._pending) == 1:
            reader = self._only_reader()
            return reader.batches() if reader is not None else iter(())
        return self._merge()

    def _only_reader(self) -> CaptureReader | None:
        _first, _order, path, reader = self._pending[0]
        if reader is None:
            try:
                reader = CaptureReader(path)
            except CaptureError as e:
                self.errors.append(str(e))
                return None
        self.readers.append(reader)
        return reader

    def _merge(self) -> Iterator[Frame]:
        pending = sorted(p for p in self._pending if p[3] is None)
        opened = [p for p in self._pending if p[3] is not None]
        heap: list[tuple[int, int, Frame, Iterator[Frame]]] = []
        for _ts, order, _path, reader in opened:
            assert reader is not None
            self.readers.append(reader)
            it = iter(reader)
            frame = next(it, None)
            if frame is not None:
                heap.append((frame[0], order, frame, it))
        heapq.heapify(heap)
        nxt = 0
        while heap or nxt < len(pending):
            # Open every capture whose first frame comes before the earliest frame in hand.
            while nxt < len(pending) and (not heap or pending[nxt][0] <= heap[0][0]):
                _first, order, path, _r = pending[nxt]
                nxt += 1
                try:
                    reader = CaptureReader(path)
                except CaptureError as e:  # changed or removed since it was looked at
                    self.errors.append(str(e))
                    continue
                self.readers.append(reader)
                it = iter(reader)
                frame = next(it, None)
                if frame is not None:
                    heapq.heappush(heap, (frame[0], order, frame, it))
            if not heap:
                continue
            _ts, order, frame, it = heapq.heappop(heap)
            yield frame
            # While this capture is the only one in play, stream it without the heap.
            limit = heap[0][0] if heap else None
            if nxt < len(pending) and (limit is None or pending[nxt][0] < limit):
                limit = pending[nxt][0]
            for frame in it:
                if limit is not None and frame[0] > limit:
                    heapq.heappush(heap, (frame[0], order, frame, it))
                    break
                yield frame


# --- paths ------------------------------------------------------------------------------------


def _looks_like_capture(path: str) -> bool:
    """True when the file starts with a pcap or pcapng magic, or is gzip whose decompressed
    start has one. Errors mean "no"."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head in _CAPTURE_MAGICS:
                return True
            if head[:2] != GZIP_MAGIC:
                return False
            f.seek(0)
            dec = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out = b""
            while len(out) < 4:
                raw = f.read(16 << 10)
                if not raw:
                    break
                out += dec.decompress(raw, 4 - len(out))
                while len(out) < 4 and dec.unconsumed_tail:
                    out += dec.decompress(dec.unconsumed_tail, 4 - len(out))
                if dec.eof:
                    break
            return out[:4] in _CAPTURE_MAGICS
    except (OSError, zlib.error):
        return False


def expand_paths(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand the user's arguments into the captures to read.

    Files stay (whatever they hold: the reader reports a file that is no capture), '-' stays
    (stdin). Directories are walked recursively in sorted order, following symbolic links but
    never a directory twice (no loops), and yield every regular file that looks like a capture
    by its magic: pcap in either byte order with µs or ns timestamps, pcapng, or gzip whose
    decompressed start has one of those magics; other files there are ignored silently. A file
    reached twice is listed once.

    Returns ``(capture paths, errors)``; errors are one line each:
    ``'<path>: no such file or directory'``, ``'<path>: permission denied'``,
    ``'<dir>: directory holds no capture files'``.
    """
    found: list[str] = []
    errors: list[str] = []
    seen_files: set[tuple[int, int]] = set()
    stdin_seen = False

    def add_file(path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key not in seen_files:
            seen_files.add(key)
            found.append(path)

    def walk(path: str, seen_dirs: set[tuple[int, int]]) -> int | None:
        """Add the captures under ``path``; their number, or None if it cannot be listed."""
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda d: d.name)
        except OSError as exc:
            errors.append(f"{path}: {_os_reason(exc)}")
            return None
        count = 0
        for entry in entries:
            child = os.path.join(path, entry.name)
            try:
                st = os.stat(child)  # follows symlinks
            except OSError:
                continue  # dangling link or vanished file: not a capture we can know
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    continue
                seen_dirs.add(key)
                count += walk(child, seen_dirs) or 0
            elif stat.S_ISREG(st.st_mode):
                if not os.access(child, os.R_OK):
                    errors.append(f"{child}: permission denied")
                elif _looks_like_capture(child):
                    count += 1
                    add_file(child, st)
        return count

    for path in paths:
        if path == "-":
            if not stdin_seen:
                stdin_seen = True
                found.append(path)
            continue
        try:
            st = os.stat(path)
        except OSError as exc:
            errors.append(f"{path}: {_os_reason(exc)}")
            continue
        if stat.S_ISDIR(st.st_mode):
            if walk(path, {(st.st_dev, st.st_ino)}) == 0:
                errors.append(f"{path}: directory holds no capture files")
        elif stat.S_ISREG(st.st_mode) and not os.access(path, os.R_OK):
            errors.append(f"{path}: permission denied")
        else:
            add_file(path, st)
    return found, errors
