"""One lab node: an anycast node on a TUN device in this network namespace, serving downloads of the lab pattern
(``GET <n>\\n`` -> n bytes) on the anycast address. Run by the lab tests as ``python -m tests.anycast.node_main``
from the project root inside a node's namespace; prints ``ready`` once serving, and writes its counters as JSON to
``--stats-file`` every second and when SIGTERM stops it.

With ``--no-forwarding`` it runs the plain stack instead (a stranger's segment gets the RST
that RFC 9293 requires): the control that shows what the anycast mechanism saves.
"""

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys

import structlog

from appliance.aio import AnycastStack
from appliance.node import ClusterConfig
from appliance.pattern import chunk
from appliance.peers import ControlTiming
from stack.aio.stack import Stack
from stack.tcp.state import State
from tunnel.keys import ClusterKeys

CHUNK = 256 * 1024


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--tun", required=True)
    p.add_argument("--service", action="append", required=True, help="anycast address with prefix, e.g. 192.0.2.10/32")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--echo-port", type=int, help="also echo back whatever arrives on this port")
    p.add_argument("--ranges", type=int, default=8)
    p.add_argument("--headroom", type=int, default=256 << 20)
    p.add_argument("--hwm-margin", type=int, default=64 << 20)
    p.add_argument("--listen", type=endpoint, required=True)
    p.add_argument("--peer", action="append", default=[], help="ID=HOST:PORT")
    p.add_argument("--key-file", required=True)
    p.add_argument("--heartbeat", type=float, default=0.2)
    p.add_argument("--dead-after", type=float, default=2.0)
    p.add_argument("--no-forwarding", action="store_true")
    p.add_argument("--stats-file")
    return p.parse_args()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await reader.readline()
        verb, _, size = line.decode("ascii", "replace").partition(" ")
        if verb != "GET" or not size.strip().isdigit():
            return
        total, offset = int(size), 0
        while offset < total:
            n = min(CHUNK, total - offset)
            writer.write(chunk(offset, n))
            offset += n
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def stats_of(stack) -> dict:
    node = getattr(stack, "node", None)
    out = {"connections": len(stack.host.connections), "host_drops": dict(stack.host.drops)}
    if node is not None:
        out.update(node.stats())
        out["claim_rtts"] = list(node.claim_rtts)
        # Connections not yet in TIME-WAIT, with their TCP_INFO: what a stalled download looks like from here.
        out["busy"] = [
            {"conn": repr(c), "limit": c.tx.send_limit, "info": dataclasses.asdict(c.info())}
            for c in stack.host.connections.values()
            if c.state is not State.TIME_WAIT
        ][:200]
        out["peer_socket"] = dataclasses.asdict(stack.socket.stats) if stack.socket else {}
    return out


async def main() -> None:
    args = parse_args()
    # Warnings only, and to stderr: stdout carries the ``ready`` line to a parent that stops reading after it.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    if args.no_forwarding:
        stack = await Stack.open_tun(args.tun, args.service)
    else:
        cluster = ClusterConfig(
            node_id=args.id,
            ranges=args.ranges,
            headroom=args.headroom,
            hwm_margin=args.hwm_margin,
            underlay_ipv6=":" in args.listen[0],
            timing=ControlTiming(heartbeat_interval=args.heartbeat, dead_after=args.dead_after),
        )
        peers = {int(i): endpoint(addr) for i, _, addr in (p.partition("=") for p in args.peer)}
        stack = await AnycastStack.open(
            tun=args.tun,
            addresses=args.service,
            listen=args.listen,
            cluster=cluster,
            peers=peers,
            keys=ClusterKeys.load(args.key_file),
        )
    server = await stack.start_server(serve, None, args.port, backlog=1024)
    if args.echo_port:
        await stack.start_server(echo, None, args.echo_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def write_stats() -> None:
        if args.stats_file:
            tmp = args.stats_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(stats_of(stack), f)
            os.replace(tmp, args.stats_file)

    print("ready", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
        write_stats()
    server.close()
    write_stats()
    await stack.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
