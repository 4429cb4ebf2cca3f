"""Two devices joined back to back in memory: what one writes, the other reads. For tests and simulations that
need the Device interface without a kernel; deterministic, no file descriptor, no threads."""

from collections import deque
from collections.abc import Callable, Iterable

from ._checks import check_mtu
from .device import READ_BATCH, DeviceStats

QUEUE_CAPACITY = 4096  # packets waiting in each direction; beyond this a write is dropped and counted


class MemoryDevice:
    """One end of an in-memory link; make both ends with ``MemoryDevice.pair()``.

    A write longer than ``mtu`` is refused (``stats.write_errors``), which makes this link stricter than a TUN
    (the kernel takes an oversize write from a TUN): a stack that builds packets too big for its link shows up
    here. A write into a full queue, or to an end that was closed, is dropped (``stats.write_drops``).
    ``on_readable`` is edge-triggered: see ``tunnel.device.CallbackDevice``.
    """

    def __init__(self, mtu: int = 1500, capacity: int = QUEUE_CAPACITY) -> None:
        self.mtu = check_mtu(mtu)
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity {capacity!r} must be a positive number of packets, like {QUEUE_CAPACITY}")
        self.capacity = capacity
        self.stats = DeviceStats()
        self.on_readable: Callable[[], None] | None = None
        self._queue: deque[bytes] = deque()  # packets written by the peer, waiting for read_batch here
        self._peer: MemoryDevice | None = None
        self._closed = False

    @classmethod
    def pair(cls, mtu: int = 1500, *, capacity: int = QUEUE_CAPACITY) -> tuple["MemoryDevice", "MemoryDevice"]:
        a, b = cls(mtu, capacity), cls(mtu, capacity)
        a._peer, b._peer = b, a
        return a, b

    def fileno(self) -> None:
        return None

    def read_batch(self, limit: int = READ_BATCH) -> list[bytes]:
        if self._closed:
            raise ValueError("read_batch on a closed MemoryDevice")
        queue = self._queue
        n = min(limit, len(queue))
        if n <= 0:
            return []
        packets = [queue.popleft() for _ in range(n)]
        stats = self.stats
        stats.packets_in += n
        stats.bytes_in += sum(map(len, packets))
        stats.read_batches += 1
        return packets

    def write(self, packet: bytes) -> bool:
        if self._closed:
            raise ValueError("write on a closed MemoryDevice")
        stats = self.stats
        if len(packet) > self.mtu:
            stats.write_errors += 1
            return False
        peer = self._peer
        if peer is None or peer._closed or len(peer._queue) >= peer.capacity:
            stats.write_drops += 1
            return False
        was_empty = not peer._queue
        peer._queue.append(bytes(packet))  # a copy if the caller reuses a bytearray; free for bytes
        stats.packets_out += 1
        stats.bytes_out += len(packet)
        if was_empty and peer.on_readable is not None:
            peer.on_readable()
        return True

    def write_batch(self, packets: Iterable[bytes]) -> int:
        write = self.write
        return sum(1 for packet in packets if write(packet))

    def pending(self) -> int:
        """Packets waiting to be read at this end."""
        return len(self._queue)

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self.on_readable = None

    def __enter__(self) -> "MemoryDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)} pending"
        return f"<MemoryDevice mtu={self.mtu} {state}>"
