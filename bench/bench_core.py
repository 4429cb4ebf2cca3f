"""Baseline: how many segments per second the sans-I/O core processes (two Hosts in one process, no I/O).

Each segment is built (header + checksum), parsed (checksum verified) and run through the connection on the
receiving side, so this is the whole per-packet cost of the stack minus the device. For scale, the same run
measures the Linux kernel moving one TCP flow over loopback with a 1460-byte MSS and reports our figure as a
ratio of its segment rate.

    python bench/bench_core.py [--megabytes 50] [--json out.json]
"""

import argparse
import json
import logging
import os
import socket
import sys
import threading
import time

import structlog

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stack.host import Host
from stack.tcp.config import TcpConfig
from stack.tcp.events import Closed, DataReceived, Established, SendSpace
from stack.tcp.state import State
from stack.testing import LinkFaults, Network

MSS = 1460


def core(total: int) -> dict:
    payload = os.urandom(1 << 20)
    sent = received = 0
    done = False
    net = Network(seed="bench")
    config = TcpConfig(send_buffer=1 << 20, receive_buffer=1 << 20)
    conns = {}

    def pump(now: float) -> None:
        nonlocal sent
        conn = conns["client"]
        while sent < total:
            n = conn.send(payload[: min(len(payload), total - sent)])
            if not n:
                return
            sent += n
        if conn.state is State.ESTABLISHED:
            conn.shutdown_write(now)

    def client_app(host, conn, event):
        if isinstance(event, Established):
            conns["client"] = conn
            pump(net.now)
        elif isinstance(event, SendSpace):
            pump(net.now)

    def server_app(host, conn, event):
        nonlocal received, done
        if isinstance(event, DataReceived):
            received += len(event.data)
        elif isinstance(event, Established):
            conns["server"] = conn
        if received >= total and conn.state is State.CLOSE_WAIT:
            conn.shutdown_write(net.now)
        if isinstance(event, Closed):
            done = True

    client = net.add_host("client", Host(["10.0.0.1"], secret=b"c" * 16, config=config), app=client_app)
    server = net.add_host("server", Host(["10.0.0.2"], secret=b"s" * 16, config=config), app=server_app)
    server.listen(9000)
    net.connect("client", "server", LinkFaults(delay=0.001))
    start = time.process_time()
    client.connect("10.0.0.2", 9000, 0.0)
    net.run(until=lambda: done and received >= total)
    cpu = time.process_time() - start
    segments = client.packets_out + server.packets_out
    assert received == total, (received, total)
    return {
        "bytes": total,
        "segments": segments,
        "cpu_seconds": cpu,
        "segments_per_second": segments / cpu,
        "goodput_mbit_per_cpu_second": total * 8 / cpu / 1e6,
    }


def kernel_loopback(total: int) -> dict:
    """One kernel TCP flow over 127.0.0.1 with MSS 1460; segments counted as data bytes / MSS."""
    server = socket.socket()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    got = 0

    def sink():
        nonlocal got
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                got += len(chunk)

    thread = threading.Thread(target=sink)
    thread.start()
    client = socket.socket()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    client.connect(("127.0.0.1", port))
    block = os.urandom(1 << 20)
    start = time.perf_counter()
    left = total
    while left:
        left -= client.send(block[: min(len(block), left)])
    client.close()
    thread.join()
    wall = time.perf_counter() - start
    server.close()
    segments = total / MSS
    return {
        "bytes": got,
        "wall_seconds": wall,
        "segments_per_second": segments / wall,
        "goodput_mbit_per_second": total * 8 / wall / 1e6,
    }


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=50)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    total = int(args.megabytes * 1_000_000)
    ours = core(total)
    kernel = kernel_loopback(max(total, 200_000_000))
    ratio = ours["segments_per_second"] / kernel["segments_per_second"]
    print(f"{'':32} {'segments/s':>12} {'Mbit/s':>10}")
    print(
        f"{'anycast-tcp core (both hosts)':32} {ours['segments_per_second']:12,.0f} "
        f"{ours['goodput_mbit_per_cpu_second']:10,.0f}   "
        f"({ours['segments']:,} segments, {ours['cpu_seconds']:.2f} s CPU)"
    )
    print(
        f"{'Linux TCP over loopback':32} {kernel['segments_per_second']:12,.0f} "
        f"{kernel['goodput_mbit_per_second']:10,.0f}"
    )
    print(f"ratio core / kernel: {ratio:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"core": ours, "kernel_loopback": kernel, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
