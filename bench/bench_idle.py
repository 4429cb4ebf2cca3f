"""Many idle connections: what each costs our stack, and whether one busy connection among them slows down.

The kernel opens N connections to our stack on a TUN and leaves them idle; we report the growth of our process's
resident memory per established connection, and the throughput of one bulk upload (kernel -> our stack) among
them against the same upload alone. The Linux kernel does the same between two namespaces over a veth in the
same run: its cost per socket is the growth of the kernel's slab memory (both ends are kernel sockets there, so
the growth is split over 2N). Needs root.

    python bench/bench_idle.py [--connections 100000] [--megabytes 200] [--json out.json]
"""

import argparse
import asyncio
import gc
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_tun import prepare, print_rows, run_peer, start_server  # noqa: E402

from stack import Stack  # noqa: E402
from stack.tcp.state import State  # noqa: E402
from tests.kernel.services import sink  # noqa: E402
from tunnel.netns import NetNamespace, veth  # noqa: E402

IDLE_PEER = str(ROOT / "bench" / "idle_peer.py")
OURS, KERNEL_A, KERNEL_B = "10.74.0.2", "10.75.0.1", "10.75.0.2"
IDLE_PORTS = ",".join(str(p) for p in range(7001, 7009))  # source ports: 64,000 per (address, port)


class Idle(asyncio.Protocol):
    """Holds a connection and does nothing: what an idle client of a real service costs, less the service."""

    __slots__ = ()


def rss() -> int:
    """This process's resident memory in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def slab() -> int:
    """The kernel's slab memory in bytes (machine-wide)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Slab in /proc/meminfo")


def wide_port_range(ns: NetNamespace) -> None:
    ns.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)


PER_PROCESS = 15_000  # sockets per kernel-side process, below its file limit


def hold(ns: NetNamespace, mode: str, host: str, count: int) -> tuple[list[subprocess.Popen], int, float]:
    """Kernel-side processes holding ``count`` idle connections (``mode`` connect) or ready to accept them
    (serve); with how many connected and how long it took."""
    procs, connected, seconds = [], 0, 0.0
    processes = -(-count // PER_PROCESS)
    share = count // processes if mode == "connect" else PER_PROCESS + 2_000
    for i in range(processes):
        n = share + (count - share * processes if mode == "connect" and i == 0 else 0)
        proc = ns.popen([sys.executable, IDLE_PEER, mode, host, IDLE_PORTS, str(n)], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        procs.append(proc)
    for proc in procs:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"idle peer failed: {proc.stderr.read()[-500:]!r}")
        if mode == "connect":
            report = json.loads(line)
            connected += report["connected"]
            seconds = max(seconds, report["seconds"])
    return procs, connected, seconds


def release(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.stdin.close()
    for proc in procs:
        proc.wait(timeout=120)


def upload_mbit(ns: NetNamespace, host: str, size: int) -> float:
    return size * 8 / run_peer(ns, "connect-send", host, 6001, size, 1)["seconds"] / 1e6


async def ours(ns: NetNamespace, count: int, size: int) -> dict:
    loop = asyncio.get_running_loop()
    wide_port_range(ns)
    async with await Stack.open_tun("atcp" + ns.name[-8:], [f"{OURS}/24"], netns=ns) as stack:
        for port in IDLE_PORTS.split(","):
            await stack.create_server(Idle, None, int(port), backlog=4096)
        await stack.start_server(sink, None, 6001)
        await loop.run_in_executor(None, upload_mbit, ns, OURS, size)  # a first run warms up both ends
        alone = await loop.run_in_executor(None, upload_mbit, ns, OURS, size)
        gc.collect()
        before = rss()
        client, connected, seconds = await loop.run_in_executor(None, hold, ns, "connect", OURS, count)
        # A handshake whose last ACK was lost in the burst completes when our SYN,ACK is retransmitted.
        for _ in range(60):
            established = sum(c.state is State.ESTABLISHED for c in stack.host.connections.values())
            if established >= connected:
                break
            await asyncio.sleep(1)
        gc.collect()
        grown = rss() - before
        among = await loop.run_in_executor(None, upload_mbit, ns, OURS, size)
        await loop.run_in_executor(None, release, client)
    return {
        "connections": established,
        "connect_seconds": seconds,
        "bytes_per_connection": grown / max(established, 1),
        "alone_mbit": alone,
        "among_mbit": among,
    }


def kernel_reference(count: int, size: int) -> dict:
    with NetNamespace.create() as a, NetNamespace.create() as b:
        veth(a, b, f"{KERNEL_A}/24", f"{KERNEL_B}/24")
        wide_port_range(a)

        def upload() -> float:
            server = start_server(b, "serve", 6001, "sink")
            try:
                return upload_mbit(a, KERNEL_B, size)
            finally:
                server.communicate(timeout=60)

        upload()  # a first run warms up both ends
        alone = upload()
        before = slab()
        server, _, _ = hold(b, "serve", KERNEL_B, count)
        client, connected, _ = hold(a, "connect", KERNEL_B, count)
        grown = slab() - before
        among = upload()
        release(client)
        release(server)
    return {
        "connections": connected,
        "bytes_per_connection": grown / max(2 * connected, 1),
        "alone_mbit": alone,
        "among_mbit": among,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--megabytes", type=float, default=200)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    runner = prepare("bench_idle.py")
    size = int(args.megabytes * 1_000_000)
    kernel = kernel_reference(args.connections, size)
    with NetNamespace.create() as ns:
        us = runner(ours(ns, args.connections, size))
    rows = [
        ("established", us["connections"], kernel["connections"], ""),
        ("memory per connection", us["bytes_per_connection"], kernel["bytes_per_connection"], "bytes"),
        ("one upload, alone", us["alone_mbit"], kernel["alone_mbit"], "Mbit/s"),
        ("one upload, among the idle ones", us["among_mbit"], kernel["among_mbit"], "Mbit/s"),
    ]
    print_rows(f"{args.connections:,} idle connections", rows)
    print(
        f"(busy among idle / alone: anycast-tcp {us['among_mbit'] / us['alone_mbit']:.2f}, "
        f"kernel {kernel['among_mbit'] / kernel['alone_mbit']:.2f}; ours: growth of the process's resident memory"
    )
    print(" per established connection, transport and protocol objects included; the kernel: slab growth per")
    print(f" socket, both ends being kernel sockets; {us['connect_seconds']:.1f} s to open them to our stack)")
    if args.json:
        Path(args.json).write_text(json.dumps({"ours": us, "kernel": kernel}, indent=2))


if __name__ == "__main__":
    main()
