"""The Linux kernel's TCP as a test peer: run inside a network namespace, prints one JSON line of results.

    peer.py connect-send HOST PORT BYTES SEED   connect, send BYTES, half-close, read to EOF
    peer.py connect-recv HOST PORT              connect, read to EOF, close
    peer.py connect-duplex HOST PORT BYTES SEED send BYTES (then half-close) while reading to EOF
    peer.py connect-expect-reset HOST PORT      connect, send a little, wait for the peer's reset
    peer.py connect-reset HOST PORT             connect, then reset (SO_LINGER 0 and close)
    peer.py connect-close-after HOST PORT DELAY connect, send one byte, wait DELAY seconds, close, read to EOF
    peer.py connect-many HOST PORT N BYTES      N connections at once, each sends BYTES and reads the echo
    peer.py serve-http HOST PORT SECONDS        the HttpOk responder on kernel sockets, for SECONDS
    peer.py serve PORT MODE [BYTES SEED] [N]    accept N connections; MODE sink (read to EOF, then reply with
                                                its sha256 and close), slow-sink (the same after
                                                2 s of not reading), source (send BYTES, close) or
                                                echo (echo to EOF, close)
Each run prints {"sent": n, "received": n, "sha256": hex, "error": null-or-text}.
"""

import asyncio
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time
from pathlib import Path


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def read_all(sock: socket.socket) -> tuple[int, str, str]:
    """Read to EOF: (bytes, sha256 hex, the first 128 bytes as text)."""
    digest, total, head = hashlib.sha256(), 0, b""
    while chunk := sock.recv(1 << 20):
        digest.update(chunk)
        total += len(chunk)
        if len(head) < 128:
            head += chunk[: 128 - len(head)]
    return total, digest.hexdigest(), head.decode("latin-1")


def report(**fields) -> None:
    print(json.dumps({"sent": 0, "received": 0, "sha256": None, "error": None, **fields}), flush=True)


def connect(host: str, port: int) -> socket.socket:
    for _ in range(100):  # the stack under test may still be starting
        try:
            return socket.create_connection((host, port), timeout=60)
        except ConnectionRefusedError:
            time.sleep(0.05)
    return socket.create_connection((host, port), timeout=60)


def main(argv: list[str]) -> None:
    mode = argv[0]
    try:
        if mode == "connect-send":
            host, port, size, seed = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
            data = payload(size, seed)
            with connect(host, port) as sock:
                started = time.perf_counter()
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                received, digest, head = read_all(sock)
                seconds = time.perf_counter() - started
            report(sent=size, received=received, sha256=digest, head=head, seconds=seconds)
        elif mode == "connect-recv":
            with connect(argv[1], int(argv[2])) as sock:
                received, digest, _ = read_all(sock)
            report(received=received, sha256=digest)
        elif mode == "connect-duplex":
            host, port, size, seed = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
            with connect(host, port) as sock:

                def send() -> None:
                    sock.sendall(payload(size, seed))
                    sock.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                received, digest, _ = read_all(sock)
                sender.join()
            report(sent=size, received=received, sha256=digest)
        elif mode == "connect-expect-reset":
            with connect(argv[1], int(argv[2])) as sock:
                sock.sendall(b"hello")
                try:
                    read_all(sock)
                    report(error="no reset: the connection ended normally")
                except ConnectionResetError:
                    report(received=-1)
        elif mode == "connect-reset":
            with connect(argv[1], int(argv[2])) as sock:
                sock.sendall(b"hello")
                time.sleep(0.2)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            report(sent=5)
        elif mode == "connect-close-after":
            with connect(argv[1], int(argv[2])) as sock:
                sock.sendall(b"x")
                time.sleep(float(argv[3]))
                sock.shutdown(socket.SHUT_WR)  # our FIN, while the peer's may still be on its way
                received, _, _ = read_all(sock)
            report(sent=1, received=received)
        elif mode == "connect-many":
            host, port, count, size = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
            started = time.perf_counter()
            result = asyncio.run(many(host, port, count, size))
            report(**result, seconds=time.perf_counter() - started)
        elif mode == "serve-http":
            host, port, seconds = argv[1], int(argv[2]), float(argv[3])
            serve_http(host, port, seconds)
        elif mode == "serve":
            port, kind = int(argv[1]), argv[2]
            size, seed = (int(argv[3]), int(argv[4])) if len(argv) > 4 else (0, 0)
            count = int(argv[5]) if len(argv) > 5 else 1
            serve(port, kind, size, seed, count)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except OSError as exc:
        report(error=f"{type(exc).__name__}: {exc}")


def serve_http(host: str, port: int, seconds: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.kernel.services import HttpOk

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(HttpOk, host, port, backlog=4096)
        print(json.dumps({"listening": port}), flush=True)
        await asyncio.sleep(seconds)
        server.close()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    report()


async def many(host: str, port: int, count: int, size: int) -> dict:
    """Open ``count`` connections at once; each sends its own bytes and checks the echo."""

    connect_times = []

    async def one(i: int) -> int:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, port)
        connect_times.append(time.perf_counter() - started)
        data = payload(size, i)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        return len(echoed) if echoed == data else -1

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    failures = [repr(r) for r in results if not isinstance(r, int) or r < 0]
    return {
        "sent": count * size,
        "received": sum(r for r in results if isinstance(r, int) and r > 0),
        "error": f"{len(failures)} failed, e.g. {failures[0]}" if failures else None,
        "connected": len(connect_times),
        "connect_median": sorted(connect_times)[len(connect_times) // 2] if connect_times else None,
        "connect_max": max(connect_times, default=None),
    }


def serve(port: int, kind: str, size: int, seed: int, count: int) -> None:
    with socket.socket(socket.AF_INET6) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # one listener for both families
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::", port))
        listener.listen(1024)
        print(json.dumps({"listening": port}), flush=True)
        results = []

        def handle(conn: socket.socket) -> None:
            with conn:
                if kind == "sink":
                    received, digest, _ = read_all(conn)
                    conn.sendall(digest.encode())
                    results.append({"received": received, "sha256": digest})
                elif kind == "source":
                    conn.sendall(payload(size, seed))
                    results.append({"sent": size})
                elif kind == "slow-sink":
                    time.sleep(2.0)  # let the sender fill our window to zero, then drain
                    received, digest, _ = read_all(conn)
                    conn.sendall(digest.encode())
                    results.append({"received": received, "sha256": digest})
                elif kind == "echo":
                    total = 0
                    while chunk := conn.recv(1 << 16):
                        conn.sendall(chunk)
                        total += len(chunk)
                    results.append({"received": total})

        threads = []
        for _ in range(count):
            conn, _ = listener.accept()
            thread = threading.Thread(target=handle, args=(conn,))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        report(
            received=sum(r.get("received", 0) for r in results),
            sent=sum(r.get("sent", 0) for r in results),
            sha256=results[0].get("sha256") if results else None,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
