"""Packet capture: a pcap writer for raw IP packets, and a device wrapper that records everything it passes.

The files open in Wireshark and tcpdump as LINKTYPE_RAW (each record is a bare IPv4 or IPv6 packet, which is
what a TUN device carries). The format is written here in a few lines rather than with dpkt's ``pcap.Writer``,
whose microsecond rounding can produce usec == 1,000,000 (a timestamp of x.9999996 s), which readers reject.
"""

import os
import struct
from collections.abc import Callable, Iterable

from .device import READ_BATCH, Device, DeviceStats

PCAP_MAGIC = 0xA1B2C3D4  # classic pcap, microsecond timestamps
PCAP_VERSION = (2, 4)
LINKTYPE_RAW = 101  # tcpdump.org link-layer header types: "Raw IP; the packet begins with an IPv4 or IPv6 header"
SNAPLEN = 65535  # no IP packet is longer, so nothing is cut
DIRECTIONS = ("", "in", "out")

_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    """Write raw IP packets to a pcap file. Not thread-safe; one writer may be shared by several TeeDevices on
    the same loop. Close it (or use it as a context manager) to flush."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.packets = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close(), the writer outlives any block)
        self._file.write(_FILE_HEADER.pack(PCAP_MAGIC, *PCAP_VERSION, 0, 0, SNAPLEN, LINKTYPE_RAW))

    def write(self, packet: bytes, timestamp: float, direction: str = "") -> None:
        """Record ``packet`` at ``timestamp`` (seconds). ``direction`` is "in" (read from a device), "out" (written
        to one) or "": classic pcap has no field for it, so it is checked but not stored."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r} must be one of 'in', 'out' or ''")
        if not timestamp >= 0:
            raise ValueError(f"timestamp {timestamp!r} must be seconds >= 0, like time.time()")
        if self._file.closed:
            raise ValueError(f"write to a closed PcapWriter ({self.path})")
        sec, usec = divmod(round(timestamp * 1_000_000), 1_000_000)
        if type(packet) is not bytes:
            packet = bytes(packet)  # a TsoPacket in its two parts, or a bytearray
        length = len(packet)
        caplen = min(length, SNAPLEN)
        self._file.write(_RECORD_HEADER.pack(sec, usec, caplen, length))
        self._file.write(packet[:caplen] if caplen < length else packet)
        self.packets += 1

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TeeDevice:
    """Wrap a device so that every packet read from it and every packet it accepts for writing is also recorded
    in a pcap file ("in" and "out"). A write the device drops is not recorded (its stats count it).

    ``clock`` is a zero-argument callable returning seconds (``time.time`` for wall-clock captures; a test's
    fake clock for reproducible files). The tee does not own the writer: ``close()`` closes the device and
    flushes the writer, and whoever made the writer closes it.
    """

    def __init__(self, device: Device, writer: PcapWriter, clock: Callable[[], float]) -> None:
        self.device = device
        self.writer = writer
        self.clock = clock

    @property
    def mtu(self) -> int:
        return self.device.mtu

    @property
    def stats(self) -> DeviceStats:
        return self.device.stats

    @property
    def on_readable(self) -> Callable[[], None] | None:
        return getattr(self.device, "on_readable", None)

    @on_readable.setter
    def on_readable(self, callback: Callable[[], None] | None) -> None:
        if self.device.fileno() is not None:
            raise ValueError("on_readable is for devices without a file descriptor; wait on fileno() instead")
        self.device.on_readable = callback  # type: ignore[attr-defined]

    def fileno(self) -> int | None:
        return self.device.fileno()

    def read_batch(self, limit: int = READ_BATCH) -> list[bytes]:
        return self._recorded(self.device.read_batch(limit))

    def _recorded(self, packets: list[bytes]) -> list[bytes]:
        if packets:
            now = self.clock()
            record = self.writer.write
            for packet in packets:
                record(packet, now, "in")
        return packets

    def __getattr__(self, name: str):
        # What only an offloading TUN has, the stack looks for: its offloads and read_batch_verified.
        if name in ("offloads", "tso_limit"):
            return getattr(self.device, name)
        if name == "read_batch_verified" and hasattr(self.device, name):
            return self._read_batch_verified
        raise AttributeError(name)

    def _read_batch_verified(self, limit: int = READ_BATCH) -> tuple[list[bytes], list[int]]:
        packets, verified = self.device.read_batch_verified(limit)
        return self._recorded(packets), verified

    def write(self, packet: bytes) -> bool:
        if not self.device.write(packet):
            return False
        self.writer.write(packet, self.clock(), "out")
        return True

    def write_batch(self, packets: Iterable[bytes]) -> int:
        write = self.write
        return sum(1 for packet in packets if write(packet))

    def close(self) -> None:
        try:
            self.device.close()
        finally:
            self.writer.flush()

    def __enter__(self) -> "TeeDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
