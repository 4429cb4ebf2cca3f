"""A ready-made application for simulations: send a payload as fast as the connection takes it, then half-close;
hash everything that arrives."""

import hashlib
from collections.abc import Callable

from ..tcp.connection import Connection
from ..tcp.events import Closed, CloseReason, DataReceived, Established, Event, PeerClosed, SendSpace
from ..tcp.state import State

CHUNK = 65536


class BulkEndpoint:
    def __init__(self, payload: bytes, log: Callable[[str], None] | None = None, name: str = "") -> None:
        self.payload = payload
        self.name = name
        self.log = log or (lambda message: None)
        self.offset = 0  # bytes of the payload the connection has taken
        self.conn: Connection | None = None
        self.digest = hashlib.sha256()
        self.received = 0
        self.peer_closed = False
        self.closed: CloseReason | None = None

    def received_exactly(self, expected: bytes) -> bool:
        return self.received == len(expected) and self.digest.digest() == hashlib.sha256(expected).digest()

    def pump(self, now: float) -> None:
        conn = self.conn
        while self.offset < len(self.payload):
            taken = conn.send(self.payload[self.offset : self.offset + CHUNK])
            if not taken:
                return  # a SendSpace event will call again
            self.offset += taken
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.shutdown_write(now)
            self.log(f"{self.name}: all {len(self.payload):,} bytes queued, FIN follows ({conn.state})")

    def on_event(self, conn: Connection, event: Event, now: float) -> None:
        if isinstance(event, Established):
            self.conn = conn
            self.log(f"{self.name}: connection established")
            self.pump(now)
        elif isinstance(event, SendSpace):
            self.pump(now)
        elif isinstance(event, DataReceived):
            self.digest.update(event.data)
            self.received += len(event.data)
        elif isinstance(event, PeerClosed):
            self.peer_closed = True
            self.log(f"{self.name}: peer finished sending after {self.received:,} bytes")
        elif isinstance(event, Closed):
            self.closed = event.reason
            self.log(f"{self.name}: connection closed ({event.reason.value})")
