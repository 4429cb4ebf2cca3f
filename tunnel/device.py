"""What the runtime needs from a packet device: read a batch, write, close, and a file descriptor to wait on (or a
callback for devices that have none). Packets are whole IP datagrams as bytes; nothing here looks inside them."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

READ_BATCH = 64  # default packets per read_batch: draining per wake-up costs 2-4x less per packet than one read


@dataclass(slots=True)
class DeviceStats:
    """Counters kept by every device; plain ints, so reading them costs nothing and they never raise."""

    packets_in: int = 0  # packets read_batch returned
    packets_out: int = 0  # packets the device accepted from write
    bytes_in: int = 0
    bytes_out: int = 0
    read_batches: int = 0  # read_batch calls that returned at least one packet (packets_in / read_batches = mean)
    write_drops: int = 0  # writes the device could not take now: EAGAIN, ENOBUFS, link down, queue full, peer gone
    write_errors: int = 0  # writes the device refused as malformed (the kernel's EINVAL) or longer than the MTU


@runtime_checkable
class Device(Protocol):
    """A source and sink of IP packets.

    ``read_batch`` never blocks: it drains up to ``limit`` packets and returns ``[]`` when none are waiting.
    ``write`` returns False when the packet was dropped (counted in ``stats``) and raises only for misuse of the
    device (I/O after ``close``), never because of what a packet contains. A device with a file descriptor is
    waited on with the event loop's ``add_reader(fileno())``; one without (``fileno()`` returns None) follows
    ``CallbackDevice`` instead.
    """

    mtu: int
    stats: DeviceStats

    def fileno(self) -> int | None: ...

    def read_batch(self, limit: int = READ_BATCH) -> list[bytes]: ...

    def write(self, packet: bytes) -> bool: ...

    def write_batch(self, packets: Iterable[bytes]) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class CallbackDevice(Device, Protocol):
    """A device with no file descriptor. The runtime sets ``on_readable``; the device calls it when a packet
    arrives while nothing was waiting (edge-triggered, like EPOLLET): the reader must then drain until a batch
    comes back shorter than its limit, or it may not be called again for the packets still queued. The callback
    runs inside the writer's ``write`` call, so it should only schedule work (``loop.call_soon``)."""

    on_readable: Callable[[], None] | None
