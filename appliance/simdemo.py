"""``anycast-tcp simulate``: two of our TCP stacks talk over a simulated faulty link on a virtual clock, and it
prints what happened. No root, no devices: the TCP core alone."""

import argparse
import random
import time

from stack.host import Host
from stack.testing import BulkEndpoint, LinkFaults, Network


def simulate(args: argparse.Namespace) -> int:
    faults = LinkFaults(
        loss=args.loss, duplicate=args.duplicate, reorder=args.reorder, corrupt=args.corrupt, delay=args.delay
    )
    net = Network(seed=args.seed)
    size = int(args.megabytes * 1_000_000)
    rng = random.Random(args.seed)
    a_data, b_data = rng.randbytes(size), rng.randbytes(size)

    def log(message: str) -> None:
        print(f"  [t={net.now:8.3f}s] {message}")

    a, b = BulkEndpoint(a_data, log, "client"), BulkEndpoint(b_data, log, "server")
    client = net.add_host(
        "client", Host(["10.0.0.1"], secret=rng.randbytes(16)), app=lambda h, c, e: a.on_event(c, e, net.now)
    )
    server = net.add_host(
        "server", Host(["10.0.0.2"], secret=rng.randbytes(16)), app=lambda h, c, e: b.on_event(c, e, net.now)
    )
    server.listen(9000)
    net.connect("client", "server", faults)
    print(
        f"anycast-tcp simulate: two user-space TCP stacks, {size:,} bytes each way at once, over a link with "
        f"{faults.loss:.0%} loss, {faults.duplicate:.0%} duplication, {faults.reorder:.0%} reordering, "
        f"{faults.corrupt:.1%} bit corruption, {faults.delay * 1000:.0f} ms delay (seed {args.seed})"
    )
    started = time.perf_counter()
    client.connect("10.0.0.2", 9000, net.now)
    steps = net.run(until=lambda: a.closed is not None and b.closed is not None, max_time=args.max_time)
    wall = time.perf_counter() - started

    ok_ab, ok_ba = a.received_exactly(b_data), b.received_exactly(a_data)
    there, back = net.links[("client", "server")], net.links[("server", "client")]
    print()
    print(
        f"  link client->server: {there.sent:,} packets sent, {there.lost:,} lost, {there.duplicated:,} duplicated, "
        f"{there.reordered:,} reordered, {there.corrupted:,} corrupted"
    )
    print(
        f"  link server->client: {back.sent:,} packets sent, {back.lost:,} lost, {back.duplicated:,} duplicated, "
        f"{back.reordered:,} reordered, {back.corrupted:,} corrupted"
    )
    for name, host, end in (("client", client, a), ("server", server, b)):
        retransmits = end.conn.tx.retransmits if end.conn else 0
        print(f"  {name}: {retransmits:,} segments retransmitted; dropped on input: {dict(host.drops) or 'nothing'}")
    print(f"  simulated {net.now:.1f} s in {wall:.1f} s of CPU ({steps:,} steps)")
    verdict = "PASS" if ok_ab and ok_ba else "FAIL"
    print(
        f"\n{verdict}: client received {a.received:,} bytes ({'exact' if ok_ab else 'WRONG'}), "
        f"server received {b.received:,} bytes ({'exact' if ok_ba else 'WRONG'})"
    )
    return 0 if verdict == "PASS" else 1


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability: give a number from 0 to 1, like 0.05")
    return value


def add_parser(sub) -> None:
    d = sub.add_parser("simulate", help="two stacks over a simulated faulty link, byte-exact both ways (no root)")
    d.add_argument("--megabytes", type=float, default=2.0, help="how much each side sends (default 2)")
    d.add_argument("--loss", type=_probability, default=0.05)
    d.add_argument("--duplicate", type=_probability, default=0.02)
    d.add_argument("--reorder", type=_probability, default=0.05)
    d.add_argument("--corrupt", type=_probability, default=0.001)
    d.add_argument("--delay", type=float, default=0.02, help="one-way delay in seconds (default 0.02)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--max-time", type=float, default=3600.0, help="simulated seconds before giving up")
    d.set_defaults(func=simulate)
