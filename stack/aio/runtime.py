"""One Host on one device under the running event loop: the only place the stack meets asyncio.

Reading drains the device per wake-up up to a bound, then yields to the loop; every batch of input, every timer
and every application call ends in one flush (output written, timer re-armed), scheduled once per loop turn so
the application never flushes and ACKs for a whole batch go out together (RFC 9293 MUST-58, MUST-59).
"""

import asyncio
from collections.abc import Callable

import structlog

from ..host import Host
from ..tcp.connection import Connection
from ..tcp.events import Established

_log = structlog.get_logger("stack.aio")

READ_BATCH = 64  # packets per read before yielding to the loop


class Runtime:
    """Drives ``host``: a Host, or anything with its driving interface (receive_packet, next_event,
    packets_to_send, get_timer, handle_timer), such as the anycast node."""

    def __init__(self, host: Host, device, loop: asyncio.AbstractEventLoop) -> None:
        self.host = host
        self.device = device
        self.loop = loop
        self.transports: dict[Connection, object] = {}  # connection -> the transport that owns its events
        self.accept: Callable[[Connection], object | None] | None = None  # new passive connection -> transport
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._device_wakeup: asyncio.TimerHandle | None = None
        self._device_wakeup_at: float | None = None
        # A device that holds packets for a while (the fault injector's delay) says when it next wants a poll.
        self._device_next = getattr(device, "next_wakeup", None)
        self._flush_scheduled = False
        self._closed = False
        self.after_output: Callable[[], None] | None = None  # more output to write at each flush (the node's UDP)
        # A TUN with offloads says which packets the kernel has checksummed already (tunnel/vnet.py).
        self._read_verified = getattr(device, "read_batch_verified", None)
        fd = device.fileno()
        if fd is not None:
            loop.add_reader(fd, self._on_readable)
        else:
            device.on_readable = lambda: loop.call_soon(self._on_readable)

    def now(self) -> float:
        return self.loop.time()

    # -- input ----------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._closed:
            return
        read_verified = self._read_verified
        if read_verified is not None:
            packets, verified = read_verified(READ_BATCH)
        else:
            packets = self.device.read_batch(READ_BATCH)
        if not packets:
            return
        now = self.loop.time()
        receive = self.host.receive_packet
        if read_verified is not None:
            for packet, ok in zip(packets, verified, strict=True):
                receive(packet, now, ok)
        else:
            for packet in packets:
                receive(packet, now)
        if len(packets) == READ_BATCH:
            self.loop.call_soon(self._on_readable)  # more may be waiting: yield, then drain again
        self._dispatch()
        self._flush()

    def inject(self, packet: bytes) -> None:
        """Process one packet as if read from the device."""
        self.feed(self.host.receive_packet, packet)

    def feed(self, receive: Callable[[bytes, float], None], data: bytes) -> None:
        """Input from another source than the device (the anycast node's peer datagrams): ``receive(data, now)``,
        then events and one flush per loop turn, as for device input."""
        receive(data, self.loop.time())
        self._dispatch()
        self.schedule_flush()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        if self._closed:
            return
        self.host.handle_timer(self.loop.time())
        self._dispatch()
        self._flush()

    # -- events ---------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        host, transports = self.host, self.transports
        while (item := host.next_event()) is not None:
            conn, event = item
            transport = transports.get(conn)
            if transport is None:
                if isinstance(event, Established) and conn.passive and self.accept is not None:
                    transport = self.accept(conn)
                if transport is None:
                    continue  # nobody wants it any more (closed by the application, or its server is gone)
            transport.handle_event(event)

    def forget(self, conn: Connection) -> None:
        self.transports.pop(conn, None)

    # -- output ---------------------------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def flush(self) -> None:
        """Write what is due now and re-arm the timer (normally scheduled, see ``schedule_flush``)."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        # Events first (their callbacks may queue output), then the output; events the output made (Closed after
        # our RST) are delivered at once, and whatever their callbacks queue gets another flush (schedule_flush).
        self._dispatch()
        packets = self.host.packets_to_send(self.loop.time())
        if packets:
            self.device.write_batch(packets)
        self._dispatch()
        if self.after_output is not None:
            self.after_output()
        if self._device_next is not None:
            self._arm_device_wakeup()
        deadline = self.host.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _arm_device_wakeup(self) -> None:
        due = self._device_next()
        if due is None or (self._device_wakeup_at is not None and self._device_wakeup_at <= due):
            return
        if self._device_wakeup is not None:
            self._device_wakeup.cancel()
        self._device_wakeup, self._device_wakeup_at = self.loop.call_at(due, self._on_device_wakeup), due

    def _on_device_wakeup(self) -> None:
        self._device_wakeup = self._device_wakeup_at = None
        if self._closed:
            return
        self.device.poll()
        self._on_readable()
        self._arm_device_wakeup()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._device_wakeup is not None:
            self._device_wakeup.cancel()
        if self._timer is not None:
            self._timer.cancel()
        fd = self.device.fileno()
        if fd is not None:
            self.loop.remove_reader(fd)
        else:
            self.device.on_readable = None
