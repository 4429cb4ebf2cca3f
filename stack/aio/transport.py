"""An ``asyncio.Transport`` over one sans-I/O connection, so Protocol-based and stream code runs unchanged.

Flow control works end to end: bytes the connection's send buffer cannot take wait here and pause the protocol
past the high-water mark (a slow peer pauses our writers); ``pause_reading`` stops taking data from the
connection, whose receive buffer then fills and closes the advertised window (a slow reader slows the peer).
"""

import asyncio
from typing import TYPE_CHECKING

from ..addresses import text
from ..tcp.connection import Connection
from ..tcp.events import Closed, CloseReason, DataReceived, Established, PeerClosed, Reset, SendSpace, SoftError
from ..tcp.state import State
from .sendqueue import SendQueue

if TYPE_CHECKING:
    from .runtime import Runtime

DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's default for socket transports


def close_error(reason: CloseReason, refused: bool) -> Exception | None:
    """The exception asyncio code expects for how a connection ended (None for an orderly or local close)."""
    if reason is CloseReason.REFUSED or refused:
        return ConnectionRefusedError("connection refused by the peer")
    if reason is CloseReason.RESET:
        return ConnectionResetError("connection reset by the peer")
    if reason is CloseReason.TIMED_OUT:
        return TimeoutError("the peer stopped acknowledging (retransmission or keep-alive timeout)")
    if reason is CloseReason.UNREACHABLE:
        return ConnectionRefusedError("the peer is unreachable (ICMP)")
    return None


class TcpTransport(asyncio.Transport):
    # Slots (asyncio's transports declare theirs): an idle connection should cost little beyond its TCB.
    __slots__ = (
        "_close_pending",
        "_closing",
        "_conn",
        "_eof_pending",
        "_high_water",
        "_lost",
        "_low_water",
        "_paused_protocol",
        "_pending",
        "_protocol",
        "_reading",
        "_refused",
        "_runtime",
        "_waiter",
    )

    def __init__(
        self,
        runtime: "Runtime",
        conn: Connection,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future | None = None,
    ) -> None:
        super().__init__()
        self._waiter = waiter  # an active open: resolved at Established, or failed if the connection ends first
        self._runtime = runtime
        self._conn = conn
        self._protocol = protocol
        self._pending = SendQueue()  # accepted from the application, not yet taken by the connection
        self._eof_pending = False
        self._close_pending = False
        self._closing = False
        self._lost = False
        self._paused_protocol = False
        self._reading = True
        self._refused = False
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4

    # -- events from the connection (called by the runtime) -------------------------------------------------

    def handle_event(self, event: object) -> None:
        if isinstance(event, DataReceived):
            if not self._lost:
                self._protocol.data_received(event.data)
        elif isinstance(event, SendSpace):
            self._push_pending()
        elif isinstance(event, PeerClosed):
            keep_open = self._protocol.eof_received() if hasattr(self._protocol, "eof_received") else False
            if not keep_open:
                self.close()
        elif isinstance(event, Reset):
            self._refused = event.refused
        elif isinstance(event, Closed):
            error = close_error(event.reason, self._refused)
            if self._waiter is not None:
                # The handshake never finished: create_connection raises, the protocol never hears of it.
                self._lost = self._closing = True
                self._runtime.forget(self._conn)
                if not self._waiter.done():
                    error = error or ConnectionAbortedError("connection closed during the handshake")
                    self._waiter.set_exception(error)
                self._waiter = None
            else:
                self._connection_lost(error)
        elif isinstance(event, Established):
            if self._waiter is not None:
                waiter, self._waiter = self._waiter, None
                self._protocol.connection_made(self)
                if not waiter.done():
                    waiter.set_result(None)
        elif isinstance(event, SoftError):
            pass  # informative only: the connection goes on (RFC 9293 MUST-56)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._pending.clear()
        self._runtime.forget(self._conn)
        if self._paused_protocol:
            self._paused_protocol = False
            self._protocol.resume_writing()  # so that drain() waiters wake up and see the connection is gone
        self._protocol.connection_lost(exc)

    # -- writing --------------------------------------------------------------------------------------------

    def write(self, data) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_pending or self._conn.tx.fin_queued:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._lost or self._closing or not data:
            return
        self._pending.append(data)
        self._push_pending()
        self._maybe_pause_protocol()
        self._runtime.schedule_flush()

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def _push_pending(self) -> None:
        # Offer until the connection refuses: only a short send() makes it promise a SendSpace event, so a slice
        # taken whole must be followed by another offer, or the rest would wait forever.
        self._pending.offer(self._conn.send)
        if not self._pending:
            if self._eof_pending:
                self._eof_pending = False
                self._conn.shutdown_write(self._runtime.now())
            if self._close_pending:
                self._close_pending = False
                self._close_now()
        self._maybe_resume_protocol()
        self._runtime.schedule_flush()

    def _maybe_pause_protocol(self) -> None:
        if not self._paused_protocol and len(self._pending) > self._high_water:
            self._paused_protocol = True
            self._protocol.pause_writing()

    def _maybe_resume_protocol(self) -> None:
        if self._paused_protocol and len(self._pending) <= self._low_water:
            self._paused_protocol = False
            self._protocol.resume_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._lost or self._eof_pending or self._conn.tx.fin_queued:
            return
        if self._pending:
            self._eof_pending = True
        elif self._conn.state in (State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
            self._conn.shutdown_write(self._runtime.now())
        self._runtime.schedule_flush()

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()

    # -- reading --------------------------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self._lost

    def pause_reading(self) -> None:
        if self._reading and not self._lost:
            self._reading = False
            self._conn.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading and not self._lost:
            self._reading = True
            self._conn.resume_reading()
            self._runtime.schedule_flush()

    # -- closing --------------------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is buffered, then close like ``close(2)``; ``connection_lost`` follows."""
        if self._closing:
            return
        self._closing = True
        if self._pending:
            self._close_pending = True
        else:
            self._close_now()
        self._runtime.schedule_flush()

    def _close_now(self) -> None:
        # Like a socket after close(2): the stack finishes the FIN exchange and TIME-WAIT on its own, and the
        # protocol hears connection_lost(None) at once, as asyncio's own transports do.
        self._conn.close(self._runtime.now())
        self._runtime.loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        """Reset the connection at once; buffered data is dropped (``connection_lost(None)`` follows)."""
        self._closing = True
        self._pending.clear()
        self._conn.abort(self._runtime.now())
        self._runtime.loop.call_soon(self._connection_lost, None)
        self._runtime.schedule_flush()

    def get_extra_info(self, name: str, default=None):
        """As a socket transport answers: "peername", "sockname", "socket" (None: there is none), and
        "tcp_info" (``Connection.info()``). Made when asked, not kept for every connection."""
        conn = self._conn
        if name == "peername":
            return text(conn.remote_addr), conn.remote_port
        if name == "sockname":
            return text(conn.local_addr), conn.local_port
        if name == "socket":
            return None
        if name == "tcp_info":
            return conn.info()
        return self._extra.get(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    @property
    def connection(self) -> Connection:
        return self._conn
