"""Our stack on a TUN device against the Linux kernel, with the kernel talking to itself as the yardstick.

Every figure is measured in this run and printed beside the kernel doing the same work over a veth pair between
two namespaces, as a ratio. Needs root (namespaces, TUN). The kernel side of each test is the same peer program
the kernel-interop tests use (tests/kernel/peer.py, tests/kernel/services.py).

    python bench/bench_tun.py [--megabytes 200] [--seconds 5] [--json out.json]     (needs root and wrk)
"""

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack import Stack  # noqa: E402
from tests.kernel.services import HttpOk, sink  # noqa: E402
from tunnel.netns import NetNamespace, veth  # noqa: E402

PEER = str(ROOT / "tests" / "kernel" / "peer.py")
OURS, KERNEL_SIDE = "10.72.0.2", "10.72.0.1"


def peer_argv(*args) -> list[str]:
    return [sys.executable, PEER, *map(str, args)]


def run_peer(ns: NetNamespace, *args) -> dict:
    proc = ns.popen(peer_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    if not lines or lines[-1].get("error"):
        raise RuntimeError(f"kernel peer failed: {lines[-1:] or err.decode()[-500:]}")
    return lines[-1]


def start_server(ns: NetNamespace, *args) -> subprocess.Popen:
    proc = ns.popen(peer_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    if b"listening" not in line:
        raise RuntimeError(f"kernel server did not start: {line!r} {proc.stderr.read()[-500:]!r}")
    return proc


# -- the kernel against itself ------------------------------------------------------------------------------


def links(ns: NetNamespace) -> list[str]:
    """The namespace's links other than loopback."""
    out = ns.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": lo:" not in line]


def wrk_cps(ns: NetNamespace, url: str, seconds: float) -> float:
    """Connections per second: wrk opens a new connection for every request (Connection: close)."""
    out = ns.run(
        ["wrk", "-t1", "-c32", f"-d{seconds:g}s", "-H", "Connection: close", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec:")))


def kernel_reference(size: int, seconds: float, offload: bool) -> dict:
    with NetNamespace.create() as a, NetNamespace.create() as b:
        veth(a, b, "10.73.0.1/24", "10.73.0.2/24")
        if not offload:
            for ns in (a, b):
                for link in links(ns):
                    ns.run(["ethtool", "-K", link, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"],
                           capture_output=True, check=True)  # fmt: skip
        server = start_server(b, "serve", 6001, "sink")
        bulk = run_peer(a, "connect-send", "10.73.0.2", 6001, size, 1)
        server.communicate(timeout=60)
        http = start_server(b, "serve-http", "10.73.0.2", 6004, seconds + 5)
        cps = wrk_cps(a, "http://10.73.0.2:6004/", seconds)
        http.kill()
    return {"bulk_mbit": size * 8 / bulk["seconds"] / 1e6, "cps": cps}


# -- the kernel against our stack ---------------------------------------------------------------------------


async def ours(ns: NetNamespace, size: int, seconds: float, offload: bool) -> dict:
    loop = asyncio.get_running_loop()
    async with await Stack.open_tun("atcp" + ns.name[-8:], [f"{OURS}/24"], netns=ns, offload=offload) as stack:
        granted = stack.device.offloads
        # kernel -> us: the kernel sends, our server receives
        await stack.start_server(sink, None, 6001)
        receive = await loop.run_in_executor(None, run_peer, ns, "connect-send", OURS, 6001, size, 1)
        # us -> kernel: our client sends to a kernel sink
        server = await loop.run_in_executor(None, start_server, ns, "serve", 6003, "sink")
        data = os.urandom(size)
        reader, writer = await stack.open_connection(KERNEL_SIDE, 6003)
        started = time.perf_counter()
        writer.write(data)
        writer.write_eof()
        reply = await reader.read()
        send_seconds = time.perf_counter() - started
        if reply.decode() != hashlib.sha256(data).hexdigest():
            raise RuntimeError("the kernel received something else than we sent")
        await loop.run_in_executor(None, server.communicate)
        # connections per second: the same HTTP responder as the kernel's, on our stack
        await stack.create_server(HttpOk, None, 6004, backlog=4096)
        cps = await loop.run_in_executor(None, wrk_cps, ns, f"http://{OURS}:6004/", seconds)
    return {
        "offloads": granted,
        "receive_mbit": size * 8 / receive["seconds"] / 1e6,
        "send_mbit": size * 8 / send_seconds / 1e6,
        "cps": cps,
    }


def prepare(program: str):
    """Refuse to run without root, quieten the stack's logs, and pick uvloop's runner if it is there."""
    if os.geteuid() != 0:
        raise SystemExit(f"{program} needs root: it creates network namespaces and a TUN device")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def print_rows(title: str, rows: list[tuple[str, float, float, str]]) -> None:
    """A table of (what, ours, the kernel's, unit) with the ratio of ours to the kernel's."""
    print(f"{title:50} {'anycast-tcp':>12} {'Linux kernel':>13} {'ratio':>7}")
    for name, ours_value, kernel_value, unit in rows:
        print(f"{name:50} {ours_value:12,.0f} {kernel_value:13,.0f} {ours_value / kernel_value:7.3f}  {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the connections-per-second run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    runner = prepare("bench_tun.py")
    size = int(args.megabytes * 1_000_000)
    if shutil.which("wrk") is None:
        raise SystemExit("bench_tun.py needs wrk for connections per second: apt-get install wrk")
    kernel = kernel_reference(size, args.seconds, offload=True)
    kernel_plain = kernel_reference(size, args.seconds, offload=False)
    us = {}
    for offload in (True, False):
        with NetNamespace.create() as ns:
            us[offload] = runner(ours(ns, size, args.seconds, offload))
    rows = []
    for offload, reference in ((True, kernel), (False, kernel_plain)):
        mode = f"offloads {us[offload]['offloads']}" if offload else "no offloads"
        rows += [
            (f"kernel -> anycast-tcp, {mode}", us[offload]["receive_mbit"], reference["bulk_mbit"], "Mbit/s"),
            (f"anycast-tcp -> kernel, {mode}", us[offload]["send_mbit"], reference["bulk_mbit"], "Mbit/s"),
            (f"connections/s, {mode}", us[offload]["cps"], reference["cps"], "conn/s"),
        ]
    print_rows("", rows)
    print("(kernel reference: one connection between two namespaces over a veth pair, with the veth's offloads on,")
    print(" or off (ethtool -K ... tso gso gro tx rx off) for the no-offload rows; MTU 1500; connections/s: wrk")
    print(" against the same Python HTTP/1.1 responder (Connection: close), on kernel sockets or on our stack)")
    if args.json:
        figures = {
            "ours": {"offload": us[True], "plain": us[False]},
            "kernel": {"offload": kernel, "plain": kernel_plain},
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
