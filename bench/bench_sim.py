"""How fast the public simulation toolkit runs asyncio applications: simulated seconds per wall-clock second.

100 client hosts, each on its own link (5 ms, 10 Mbit/s) to one server, run two workloads in virtual time:
- chatty: each connection sends a 100-byte request every 100 ms and reads a 1,000-byte reply, for a simulated
  minute;
- bulk: each connection downloads 1 MB.
The figure of merit is simulated time over wall time: above 1, a test runs faster than the real network would
(the same workload on real sockets takes the simulated time, by definition). No kernel analogue exists.

    python bench/bench_sim.py [--clients 100] [--seconds 60] [--json out.json]
"""

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path

import structlog

from stack.testing import LinkFaults, SimNetwork, run

LINK = LinkFaults(delay=0.005, bandwidth=1.25e6)
REQUEST, REPLY, BULK = 100, 1000, 1_000_000


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = await reader.readexactly(1)
    if first == b"B":
        writer.write(b"x" * BULK)
        await writer.drain()
        writer.close()
        return
    await reader.readexactly(REQUEST - 1)
    while True:
        writer.write(b"r" * REPLY)
        await writer.drain()
        try:
            await reader.readexactly(REQUEST)
        except asyncio.IncompleteReadError:
            break
    writer.close()


async def workload(kind: str, clients: int, seconds: float) -> dict:
    net = SimNetwork(seed=1, link=LINK)
    server = net.add_host("server", "10.0.0.1")
    await server.start_server(serve, "10.0.0.1", 80)
    loop = asyncio.get_running_loop()
    start = loop.time()
    moved = 0

    async def client(index: int) -> None:
        nonlocal moved
        host = net.add_host(f"client{index}", f"10.1.{index // 250}.{index % 250 + 1}")
        reader, writer = await host.open_connection("10.0.0.1", 80)
        if kind == "bulk":
            writer.write(b"B")
            moved += len(await reader.read())
            return
        await asyncio.sleep(index * 0.1 / clients)  # spread the requests over the interval
        while loop.time() - start < seconds:
            writer.write(b"q" * REQUEST)
            moved += len(await reader.readexactly(REPLY))
            await asyncio.sleep(0.1)
        writer.close()

    wall = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - wall
    simulated = loop.time() - start
    packets = sum(link.faults.delivered for link in net._links.values())
    return {
        "workload": kind,
        "clients": clients,
        "simulated_s": simulated,
        "wall_s": wall,
        "simulated_per_wall": simulated / wall,
        "packets": packets,
        "packets_per_wall_s": packets / wall,
        "bytes": moved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated length of the chatty workload")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rows = [run(workload(kind, args.clients, args.seconds)) for kind in ("chatty", "bulk")]
    print(f"{'workload':28} {'simulated s':>12} {'wall s':>8} {'sim s / wall s':>15} {'packets/wall s':>15}")
    for r in rows:
        name = f"{r['workload']} ({r['clients']} connections)"
        print(
            f"{name:28} {r['simulated_s']:12.1f} {r['wall_s']:8.2f} {r['simulated_per_wall']:15.1f}"
            f" {r['packets_per_wall_s']:15,.0f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
