"""Applications for cluster simulations: clients that ask for N bytes and check every one, and a node service
that sends them. The bytes follow a fixed non-repeating-at-powers-of-two pattern, so misordered, duplicated or
lost data cannot go unnoticed."""

import hashlib

from stack.tcp.connection import Connection
from stack.tcp.events import Closed, CloseReason, DataReceived, Established, Event, PeerClosed, Reset, SendSpace
from stack.tcp.state import State

PERIOD = 65_521  # prime
PATTERN = hashlib.shake_256(b"anycast-tcp cluster").digest(PERIOD) * 2
REQUEST = 8


def pattern(offset: int, size: int) -> bytes:
    out = []
    while size:
        start = offset % PERIOD
        take = min(size, PERIOD)
        out.append(PATTERN[start : start + take])
        offset += take
        size -= take
    return b"".join(out)


class DownloadService:
    """On every node: read an 8-byte size, send that many pattern bytes, half-close; close when the client does."""

    def __init__(self) -> None:
        self.pending: dict[Connection, list] = {}  # conn -> [request bytes, bytes still to send, offset]

    def __call__(self, node, conn: Connection, event: Event, now: float) -> None:
        if isinstance(event, Established):
            self.pending[conn] = [b"", None, 0]
        elif isinstance(event, DataReceived):
            state = self.pending.get(conn)
            if state is None or state[1] is not None:
                return
            state[0] += event.data
            if len(state[0]) >= REQUEST:
                state[1] = int.from_bytes(state[0][:REQUEST], "big")
                self._pump(conn, state, now)
        elif isinstance(event, SendSpace):
            state = self.pending.get(conn)
            if state is not None and state[1] is not None:
                self._pump(conn, state, now)
        elif isinstance(event, PeerClosed):
            conn.close(now)
        elif isinstance(event, Closed):
            self.pending.pop(conn, None)

    @staticmethod
    def _pump(conn: Connection, state: list, now: float) -> None:
        while state[1] > state[2]:
            taken = conn.send(pattern(state[2], min(state[1] - state[2], 32768)))
            if not taken:
                return
            state[2] += taken
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.shutdown_write(now)


class Downloader:
    """One client connection: ask for ``size`` bytes, check each against the pattern, close at the end."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.received = 0
        self.exact = True
        self.reset = False
        self.closed: CloseReason | None = None
        self.conn: Connection | None = None

    @property
    def done(self) -> bool:
        return self.closed is not None

    @property
    def succeeded(self) -> bool:
        return self.closed is CloseReason.NORMAL and self.exact and self.received == self.size and not self.reset

    def on_event(self, conn: Connection, event: Event, now: float) -> None:
        if isinstance(event, Established):
            conn.send(self.size.to_bytes(REQUEST, "big"))
        elif isinstance(event, DataReceived):
            if event.data != pattern(self.received, len(event.data)):
                self.exact = False
            self.received += len(event.data)
        elif isinstance(event, PeerClosed):
            conn.close(now)
        elif isinstance(event, Reset):
            self.reset = True
        elif isinstance(event, Closed):
            self.closed = event.reason


class Clients:
    """The client-side application for a ClusterSim: routes each connection's events to its Downloader."""

    def __init__(self) -> None:
        self.downloads: dict[Connection, Downloader] = {}

    def start(self, host, service: str, port: int, size: int, now: float) -> Downloader:
        download = Downloader(size)
        conn = host.connect(service, port, now)
        download.conn = conn
        self.downloads[conn] = download
        return download

    def __call__(self, host, conn: Connection, event: Event, now: float) -> None:
        download = self.downloads.get(conn)
        if download is not None:
            download.on_event(conn, event, now)

    def all_done(self) -> bool:
        return all(d.done for d in self.downloads.values())
