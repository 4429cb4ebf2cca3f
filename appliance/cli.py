"""The ``anycast-tcp`` command: run a node, check its config, make a key, read a running node's status, and the
namespace lab demo. Bad input gets one line naming the problem and the fix, exit 2; ``--debug`` adds tracebacks."""

import argparse
import asyncio
import signal
import sys

import structlog

from tunnel.keys import generate_key_line

from . import demo, simdemo
from .config import ConfigError, load

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = structlog.get_logger()


def check_config(args: argparse.Namespace) -> int:
    from .daemon import check

    config = load(args.config)
    check(config)
    print(f"{args.config}: ok (node {config.node_id}, {len(config.services)} services)")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from .daemon import check
    from .logs import configure_logging

    config = load(args.config)
    check(config)
    configure_logging("debug" if args.debug else args.log_level or config.log_level, config.log_format)
    return _event_loop(_serve(args, config))


async def _serve(args: argparse.Namespace, config) -> int:
    from .daemon import Node

    node = await Node.start(config, capture=args.capture)
    if config.user:
        from .privileges import drop_privileges

        try:
            drop_privileges(config.user, hand_over=(config.control_socket,))
        except BaseException:
            await node.stop(grace=0)
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        try:
            node.reload()
        except (ConfigError, OSError, ValueError) as exc:
            log.error("node.reload_refused", error=str(exc))  # the running configuration stays as it was

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stop.wait()
        log.info("node.stopping", open_connections=node.open_connections(), grace=config.grace)
    finally:
        await node.stop()
    return EXIT_OK


def keygen(args: argparse.Namespace) -> int:
    print(generate_key_line(args.key_id))
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    import json

    from .status import query, render

    path = args.socket or load(args.config).control_socket
    if not path:
        raise ConfigError("node.control_socket", "is empty in that config", "give --socket PATH")
    state = query(path)
    print(json.dumps(state, indent=2, sort_keys=True) if args.json else render(state))
    return EXIT_OK


def _event_loop(coro) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anycast-tcp", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="tracebacks for errors, debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a node: TUN, anycast forwarding, services, metrics")
    p.add_argument("--config", required=True, metavar="node.toml")
    p.add_argument("--capture", metavar="FILE.pcap", help="record every packet and tunnel datagram")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="overrides [log] level")
    p.set_defaults(func=run)

    p = sub.add_parser("check-config", help="validate a node.toml: exit 0, or one line naming the problem")
    p.add_argument("config", metavar="node.toml")
    p.set_defaults(func=check_config)

    p = sub.add_parser("keygen", help="print a fresh cluster key line for the key file")
    p.add_argument("--key-id", type=int, default=1, help="the key's id (1-255), for rotation")
    p.set_defaults(func=keygen)

    p = sub.add_parser("status", help="a running node's peers, connections, claims and counters")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="node.toml", help="find the control socket from the node's config")
    where.add_argument("--socket", metavar="PATH", help="the node's control socket")
    p.add_argument("--json", action="store_true", help="the raw status as JSON")
    p.set_defaults(func=status)

    p = sub.add_parser("lab", help="the namespace lab: a client, a router and three nodes on one machine")
    demo.add_parsers(p)  # lab demo | up | down, each with its own func

    simdemo.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug and args.func is not run:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(10))
    try:
        return args.func(args)
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"anycast-tcp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, RuntimeError, ValueError) as exc:
        if args.debug:
            raise
        print(f"anycast-tcp: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, PermissionError):
        text += " (creating a TUN device and routes needs root or CAP_NET_ADMIN)"
    return " ".join(text.split())


def entry() -> None:
    """Console-script entry: a closed pipe (``anycast-tcp status | head``) ends the program quietly."""
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    entry()
