"""Types of the C fast lane (monitor/_flowcore.c)."""

from collections.abc import Callable, Iterator
from typing import Any

class Core:
    def __init__(
        self,
        window_ns: int,
        tcp_idle_ns: int,
        udp_idle_ns: int,
        udp_ports: frozenset[int],
        stream_tcp: Callable[..., object] | None,
        obs_datagram: Callable[..., object] | None,
        bypassed: Callable[[Any, bool, int], object] | None = None,
        obs_syn: Callable[[Any, bool, int, int, bytes], object] | None = None,
    ) -> None: ...
    def run(
        self,
        frames: Iterator[Any],
        handler: Callable[[int, int, bytes, int, int, bool], bool],
        npk: int,
        nbytes: int,
        stop_at: int,
    ) -> tuple[int, int, int, bool]: ...
    def add(self, ckey: bytes, skey: bytes, flow: Any, last_ns: int) -> None: ...
    def remove(self, ckey: bytes, skey: bytes) -> None: ...
    def bypass(self, key: bytes, from_client: bool, seq: int, nbytes: int) -> None: ...
    def settle(self, key: bytes) -> None: ...
    def settle_all(self) -> None: ...
    def seen(self, sig: bytes, ts_ns: int) -> bool: ...
    def take_duplicates(self) -> int: ...

class Records:
    """A chunk's complete pcap records (pcap_block); iterating gives frame tuples."""

    @property
    def last_ts(self) -> int: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[int, int, bytes, int]]: ...

def pcap_block(
    buf: bytes, off: int, big_endian: bool, frac: int, linktype: int, max_caplen: int
) -> tuple[Records, int, int]: ...
def pcap_records(
    buf: bytes, off: int, big_endian: bool, frac: int, linktype: int, max_caplen: int
) -> tuple[list[tuple[int, int, bytes, int]], int, int]: ...
