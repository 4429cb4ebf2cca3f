"""The kernel's side of bench_idle.py: N idle TCP connections, held open until stdin closes.

idle_peer.py connect HOST PORT[,PORT...] N   connect N sockets spread over the ports (an address pair has at
                                            most ~64,000 source ports), a batch at a time; print one JSON
                                            line {"connected": n, "seconds": s}
idle_peer.py serve HOST PORT[,PORT...] N     listen on the ports, print "listening", accept N connections;
                                            print {"accepted": n}
"""

import json
import resource
import selectors
import socket
import sys
import time

BATCH = 500  # connects in flight at once: enough to keep the server busy, few enough not to overflow queues


def raise_file_limit(count: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))


def serve(host: str, ports: list[int], count: int) -> None:
    """Accept on the ports (shared with other serving processes through SO_REUSEPORT) and hold every connection
    until stdin closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    selector = selectors.DefaultSelector()
    for port in ports:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(4096)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    print("listening", flush=True)
    held: list[socket.socket] = []
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                return
            try:
                while len(held) < count:
                    held.append(key.fileobj.accept()[0])
            except BlockingIOError:
                pass


def connect(host: str, ports: list[int], count: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    selector = selectors.DefaultSelector()
    held: list[socket.socket] = []
    started = time.monotonic()
    deadline = started + 600
    n = 0
    while len(held) < count and time.monotonic() < deadline:
        while n - len(held) < BATCH and n < count:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex((host, ports[n % len(ports)]))
            selector.register(sock, selectors.EVENT_WRITE)
            n += 1
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            selector.unregister(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                held.append(sock)
            else:
                sock.close()
                n -= 1  # try that one again
    print(json.dumps({"connected": len(held), "seconds": time.monotonic() - started}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    mode, host, ports, count = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3].split(",")], int(sys.argv[4])
    raise_file_limit(count)
    {"connect": connect, "serve": serve}[mode](host, ports, count)
