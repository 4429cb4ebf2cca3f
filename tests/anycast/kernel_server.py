"""A kernel-TCP download server for the lab: answers ``GET <n>\\n`` with ``n`` pattern bytes, then closes.

It stands in for a node in the topology tests, and shows the problem the project solves: plain kernel TCP answers a
segment for a connection it does not know with a RST, so moving the anycast route resets the download.

In-process (``PatternServer.start(ns, port)``: the listening socket is made inside ``ns``, one thread per
connection) or standalone inside a namespace: ``python kernel_server.py PORT``.
"""

import contextlib
import socket
import sys
import threading
from pathlib import Path

if not __package__:  # run as a script: the project root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from appliance import pattern

REQUEST_MAX = 64  # bytes of request line we accept
SEND_TIMEOUT = 10.0  # seconds a send may block before the server gives up on the connection


def read_request(conn: socket.socket) -> int | None:
    """The ``n`` of ``GET <n>\\n``, or None for anything else."""
    line = b""
    while not line.endswith(b"\n") and len(line) < REQUEST_MAX:
        piece = conn.recv(REQUEST_MAX - len(line))
        if not piece:
            return None
        line += piece
    words = line.split()
    if len(words) != 2 or words[0] != b"GET" or not words[1].isdigit():
        return None
    return int(words[1])


def serve_one(conn: socket.socket) -> None:
    with conn:
        try:
            conn.settimeout(SEND_TIMEOUT)
            size = read_request(conn)
            if size is None:
                return
            offset = 0
            while offset < size:
                piece = pattern.view(offset, min(pattern.PERIOD, size - offset))
                conn.sendall(piece)
                offset += len(piece)
        except OSError:
            pass  # the client reset or vanished: nothing to tell anyone


class PatternServer:
    """A dual-stack (IPv6 socket with IPV6_V6ONLY off) listener on ``port`` for every address of its namespace."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.port = listener.getsockname()[1]
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"pattern-server-{self.port}", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, ns, port: int = 0) -> "PatternServer":
        """Listen inside ``ns`` (a NetNamespace; None: the current one)."""
        listen = _listen if ns is None else (lambda p: ns.call_inside(_listen, p))
        return cls(listen(port))

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            serve_one(conn)
        finally:
            with self._lock:
                self._connections.discard(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a blocked sendall
        self._thread.join(5)

    def __enter__(self) -> "PatternServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _listen(port: int) -> socket.socket:
    return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128)


if __name__ == "__main__":
    server = PatternServer.start(None, int(sys.argv[1]))
    print(server.port, flush=True)
    threading.Event().wait()
