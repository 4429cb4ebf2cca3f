"""``anycast-tcp lab demo | up | down``: the namespace lab (``appliance.lab``) with real nodes in it.

``lab demo`` builds the lab, starts three ``anycast-tcp run`` processes, one per node namespace, and has a
kernel-TCP client in the client namespace download from the anycast address while the router moves the route to
another node every 0.2 s. It shows where the route points, how far the download is and what each node does
(peers, connections, claims, forwarding), then says PASS only if every byte arrived exactly and the client never
saw a reset. ``--no-anycast`` runs the same nodes without a [cluster]: plain TCP, where the first route move
breaks the connection. Everything it made goes away at the end, also on failure, Ctrl-C and SIGTERM.

``lab up`` leaves the same lab running and records what it made in a state file; ``lab down`` takes it down.

Module-level imports stay light: the CLI imports this module to build its parser, and the lab, rich and the
status client are imported only by the command that runs.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # node and client processes run here, so `appliance` imports
PORT = 80  # the download service
HANDLER = "appliance.demo_service:download"
ECHO_PORT = 7
METRICS_PORT = 9100
DEMO_PREFIX, DEMO_NET = "ademo", 46  # 10.46.x.x and 10.47.0.x: used by no test and no benchmark
UP_PREFIX, UP_NET = "alab", 48
STATE_FILE = "/run/anycast-tcp/lab.json"
NODES = 3
# Small slices, as the lab tests use: 1024 slices of 4 MiB, so every download crosses its high-water mark (a
# claim) and the end of its home slice (the send fence) within its first 4 MiB.
CLUSTER = {"ranges": 1024, "headroom": '"1MiB"', "hwm_margin": '"512KiB"', "heartbeat_interval": 0.2, "dead_after": 2.0}
NODE_GRACE = "1s"  # SIGTERM: open connections get this long before they are reset
READY_TIMEOUT = 30.0  # seconds for every node to answer on its control socket
CONNECT_TIMEOUT = 15.0
STOP_TIMEOUT = 8.0  # seconds after SIGTERM before SIGKILL (grace + releasing claims + closing)
REFRESH = 0.2  # the live view, 5 times a second
PLAIN_EVERY = 1.0  # without a terminal: one progress line a second


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, through every ``finally``."""


def add_parsers(parser: argparse.ArgumentParser) -> None:
    """The ``lab`` command's sub-commands, each with ``func(args) -> exit status``."""
    sub = parser.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    p = sub.add_parser("demo", help="a download survives the route moving between 3 nodes every 0.2 s (root)")
    p.add_argument("--megabytes", type=_positive(int), default=1000, help="download size in MB (default 1000)")
    p.add_argument("--interval", type=_positive(float), default=0.2, help="seconds between route moves (0.2)")
    p.add_argument("--no-anycast", action="store_true", help="nodes without [cluster]: plain TCP, which breaks")
    p.add_argument("--keep", action="store_true", help="keep the node.toml files and logs even when it passes")
    p.add_argument("--prefix", default=DEMO_PREFIX, help=f"namespace name prefix, 1-6 letters (default {DEMO_PREFIX})")
    p.add_argument("--timeline", metavar="FILE", help="write the download's progress and the route moves as JSON")
    p.set_defaults(func=demo)

    p = sub.add_parser("up", help="build the lab with 3 running nodes and leave it up (root)")
    p.add_argument("--no-anycast", action="store_true", help="nodes without [cluster]: plain TCP")
    p.add_argument("--prefix", default=UP_PREFIX, help=f"namespace name prefix, 1-6 letters (default {UP_PREFIX})")
    p.add_argument("--state-file", default=STATE_FILE, help=f"where to record the lab (default {STATE_FILE})")
    p.set_defaults(func=up)

    p = sub.add_parser("down", help="take down the lab that `lab up` built")
    p.add_argument("--state-file", default=STATE_FILE, help=f"the lab's record (default {STATE_FILE})")
    p.set_defaults(func=down)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
        return value

    return parse


def _require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the lab needs root (network namespaces, veth pairs, TUN devices): run it with sudo")
    if shutil.which("ip") is None:
        raise RuntimeError("iproute2's `ip` command was not found: install it (apt-get install iproute2)")


# -- the cluster: a lab with a node process in every node namespace --------------------------------------------


def node_config(lab, k: int, workdir: Path, anycast: bool) -> str:
    """Node ``k``'s node.toml: the anycast addresses on its TUN, the download and echo services, and with
    ``anycast`` a [cluster] of every lab node over the underlay, sharing ``cluster.key``."""
    v4, v6 = lab.anycast(4), lab.anycast(6)
    lines = [
        "[node]",
        f"id = {k}",
        f'control_socket = "{workdir / f"node{k}.sock"}"',
        f'grace = "{NODE_GRACE}"',
        "[tun]",
        f'name = "{lab.tun_name(k)}"',
        f'addresses = ["{v4}/32", "{v6}/128"]',
    ]
    if anycast:
        host, port = lab.node_underlay(k)
        lines += ["[cluster]", f'listen = "{host}:{port}"', 'key_file = "cluster.key"']
        lines += [f"{key} = {value}" for key, value in CLUSTER.items()]
        for j in lab.node_numbers:
            if j != k:
                host, port = lab.node_underlay(j)
                lines += ["[[cluster.peers]]", f"id = {j}", f'address = "{host}:{port}"']
    for listen in (f"{v4}:{PORT}", f"[{v6}]:{PORT}"):
        lines += ["[[services]]", 'kind = "python"', f'listen = "{listen}"', f'handler = "{HANDLER}"']
    lines += ["[[services]]", 'kind = "echo"', f'listen = "{v4}:{ECHO_PORT}"']
    lines += ["[metrics]", f'listen = "127.0.0.1:{METRICS_PORT}"']  # inside the node's namespace
    lines += ["[log]", 'level = "info"', 'format = "json"']
    return "\n".join(lines) + "\n"


class Cluster:
    """The lab plus one ``anycast-tcp run`` per node namespace. ``detach`` (``lab up``): the nodes get a session of
    their own and outlive this process; otherwise they are told to die with it (``setpriv --pdeathsig``), so even a
    SIGKILLed demo leaves no node running."""

    def __init__(self, lab, workdir: Path, anycast: bool) -> None:
        self.lab = lab
        self.workdir = workdir
        self.anycast = anycast
        self.nodes: dict[int, subprocess.Popen] = {}

    @classmethod
    def start(cls, prefix: str, net: int, workdir: Path, *, anycast: bool, detach: bool = False) -> "Cluster":
        from tunnel.keys import generate_key_line

        from .lab import Lab

        lab = Lab.build(nodes=NODES, prefix=prefix, net=net)
        cluster = cls(lab, workdir, anycast)
        try:
            key = workdir / "cluster.key"
            key.touch(mode=0o600)
            key.write_text(generate_key_line(1) + "\n")
            wrap = [] if detach or shutil.which("setpriv") is None else ["setpriv", "--pdeathsig", "TERM", "--"]
            for k in lab.node_numbers:
                config = cluster.config_path(k)
                config.write_text(node_config(lab, k, workdir, anycast))
                argv = [*wrap, sys.executable, "-m", "appliance.cli", "run", "--config", str(config)]
                with open(cluster.log_path(k), "wb") as log:
                    cluster.nodes[k] = lab.node_ns(k).popen(
                        argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
                    )
            cluster.wait_ready(READY_TIMEOUT)
        except BaseException:
            with _signals_held():
                cluster.close()
            raise
        return cluster

    def config_path(self, k: int) -> Path:
        return self.workdir / f"node{k}.toml"

    def log_path(self, k: int) -> Path:
        return self.workdir / f"node{k}.log"

    def socket_path(self, k: int) -> Path:
        return self.workdir / f"node{k}.sock"

    def wait_ready(self, timeout: float) -> None:
        """Until every node answers on its control socket; a node that exits or stays silent is a RuntimeError
        that points at its log."""
        deadline = time.monotonic() + timeout
        waiting = set(self.nodes)
        while waiting:
            for k in sorted(waiting):
                if self.status(k) is not None:
                    waiting.discard(k)
                elif (code := self.nodes[k].poll()) is not None:
                    raise RuntimeError(
                        f"node {k} exited with status {code} while starting{self.last_words(k)}; see {self.log_path(k)}"
                    )
            if waiting and time.monotonic() > deadline:
                k = min(waiting)
                raise RuntimeError(
                    f"node {k} did not answer on {self.socket_path(k)} within {timeout:g} s; see {self.log_path(k)}"
                )
            if waiting:
                time.sleep(0.1)

    def last_words(self, k: int) -> str:
        """``: <the last line of node k's log>``, shortened, or nothing."""
        try:
            lines = self.log_path(k).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        if not lines:
            return ""
        last = " ".join(lines[-1].split())
        return f": {last[:300]}{'...' if len(last) > 300 else ''}"

    def status(self, k: int) -> dict | None:
        from .status import StatusError, query

        try:
            return query(str(self.socket_path(k)), timeout=1.0)
        except StatusError:
            return None

    def statuses(self) -> dict[int, dict | None]:
        return {k: self.status(k) for k in self.nodes}

    def exited(self) -> dict[int, int]:
        """Nodes that are no longer running: node -> exit status."""
        return {k: code for k, p in self.nodes.items() if (code := p.poll()) is not None}

    def stop_nodes(self) -> None:
        """SIGTERM to every node we started, SIGKILL to any still running after STOP_TIMEOUT."""
        for process in self.nodes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.nodes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop the nodes, then delete the namespaces (idempotent)."""
        try:
            self.stop_nodes()
        finally:
            self.lab.close()

    def record(self) -> dict:
        """What ``lab down`` needs to take this lab down, and what a person needs to reach it."""
        lab = self.lab
        return {
            "prefix": lab.prefix,
            "namespaces": [ns.name for ns in lab.namespaces()],
            "client": lab.client.name,
            "router": lab.router.name,
            "workdir": str(self.workdir),
            "anycast": self.anycast,
            "nodes": {
                str(k): {
                    "pid": p.pid,
                    "netns": lab.node_ns(k).name,
                    "config": str(self.config_path(k)),
                    "log": str(self.log_path(k)),
                    "control_socket": str(self.socket_path(k)),
                    "route_via": lab.node_address(k),
                }
                for k, p in self.nodes.items()
            },
        }


# -- the client -------------------------------------------------------------------------------------------------


class Client:
    """``appliance.demo_client`` in the client namespace; a thread reads its JSON lines as they come."""

    def __init__(self, cluster: Cluster, nbytes: int) -> None:
        self.nbytes = nbytes
        self.log = cluster.workdir / "client.log"
        self.connected_at: float | None = None
        self.bytes = 0
        self.resets = 0
        self.progress: list[tuple[float, int]] = []  # (monotonic time, bytes so far)
        self.result: dict | None = None
        self.done = threading.Event()
        argv = [sys.executable, "-m", "appliance.demo_client", cluster.lab.anycast(4), str(PORT), str(nbytes)]
        with open(self.log, "wb") as log:
            self.process = cluster.lab.client.popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        self._thread = threading.Thread(target=self._read, name="demo-client-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "connected":
                    self.connected_at = event["t"]
                elif event.get("event") in ("progress", "result"):
                    self.bytes, self.resets = event["bytes"], event["resets"]
                    if "t" in event:
                        self.progress.append((event["t"], event["bytes"]))
                if event.get("event") == "result":
                    self.result = event
        except (OSError, ValueError):
            pass  # the pipe was closed under us at teardown
        finally:
            self.done.set()

    def wait(self, timeout: float) -> None:
        self.done.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(3.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._thread.join(3.0)
        with contextlib.suppress(OSError):
            self.process.stdout.close()


# -- the demo ---------------------------------------------------------------------------------------------------


def demo(args: argparse.Namespace) -> int:
    _require_root()
    anycast = not args.no_anycast
    nbytes = args.megabytes * 1_000_000
    workdir = Path(tempfile.mkdtemp(prefix=f"anycast-tcp-{args.prefix}-"))
    keep = True  # until the run has ended well
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    cluster = client = flipper = None
    try:
        mode = "anycast nodes" if anycast else "plain TCP nodes (no [cluster]: no forwarding, no claims)"
        print(f"Building the lab: a client, a router and {NODES} {mode}. Node configs and logs: {workdir}", flush=True)
        cluster = Cluster.start(args.prefix, DEMO_NET, workdir, anycast=anycast)
        anycast_address = cluster.lab.anycast(4)
        print(
            f"Nodes ready. Downloading {nbytes:,} bytes from {anycast_address}:{PORT} while the route moves to "
            f"another node every {args.interval:g} s.",
            flush=True,
        )
        client = Client(cluster, nbytes)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while client.connected_at is None and not client.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        flipper = cluster.lab.flipper(args.interval).start()
        watch = _Watch(cluster, client, flipper, args.interval)
        if sys.stdout.isatty() and _have_rich():
            watch.live()
        else:
            watch.plain()
        flipper.stop()  # the count of route moves ends with the download
        final = cluster.statuses()
        ok, line = verdict(anycast, client, flipper, final, cluster)
        print(line, flush=True)
        if args.timeline:
            _write_timeline(Path(args.timeline), anycast, client, flipper, line)
        keep = args.keep or not ok
        return 0 if ok else 1
    except Terminated:
        print("SIGTERM: tearing the lab down", file=sys.stderr, flush=True)
        keep = False
        return 143
    except KeyboardInterrupt:
        print("\nInterrupted: tearing the lab down", file=sys.stderr, flush=True)
        keep = False
        raise
    finally:
        with _signals_held():
            _teardown(cluster, client, flipper)
            if keep:
                print(f"The run's node.toml files and logs are kept in {workdir}", file=sys.stderr, flush=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _write_timeline(path: Path, anycast: bool, client: Client, flipper, verdict_line: str) -> None:
    """The run as data, for a plot (bench/plot_route_moves.py): times in seconds from the connection, both clocks
    being the system's monotonic clock (the client's and ours)."""
    start = client.connected_at or (client.progress[0][0] if client.progress else 0.0)
    timeline = {
        "anycast": anycast,
        "verdict": verdict_line,
        "progress": [(round(t - start, 4), n) for t, n in client.progress],
        "moves": [(round(t - start, 4), node) for t, node in flipper.history],
    }
    path.write_text(json.dumps(timeline))


def _have_rich() -> bool:
    try:
        import rich.live  # noqa: F401
    except ImportError:  # an install without it still gets the plain view
        return False
    return True


def _raise_terminated(signum, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def _signals_held():
    """Teardown must finish: a second Ctrl-C or SIGTERM waits until it has (every step has its own timeout)."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _teardown(cluster: Cluster | None, client: Client | None, flipper) -> None:
    errors = []
    for step in (
        flipper.stop if flipper is not None else None,
        client.stop if client is not None else None,
        cluster.close if cluster is not None else None,
    ):
        if step is None:
            continue
        try:
            step()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


class _Watch:
    """The view while the client downloads: rich's Live on a terminal, otherwise a plain line a second."""

    def __init__(self, cluster: Cluster, client: Client, flipper, interval: float) -> None:
        self.cluster, self.client, self.flipper, self.interval = cluster, client, flipper, interval
        self.started = time.monotonic()

    def plain(self) -> None:
        while not self.client.done.wait(PLAIN_EVERY):
            statuses = self.cluster.statuses()
            forwarded = sum(s["forwarding"]["out"] for s in statuses.values() if s)
            print(
                f"[{time.monotonic() - self.started:6.1f} s] route -> node {self.cluster.lab.current}, "
                f"{self.flipper.flips} moves | {self.client.bytes:,} / {self.client.nbytes:,} bytes "
                f"({self.rate() / 1e6:.1f} MB/s) | forwarded {forwarded:,} packets",
                flush=True,
            )

    def live(self) -> None:
        from rich.live import Live

        with Live(self.render(self.cluster.statuses()), auto_refresh=False, transient=False) as live:
            while not self.client.done.wait(REFRESH):
                live.update(self.render(self.cluster.statuses()), refresh=True)
            live.update(self.render(self.cluster.statuses()), refresh=True)

    def rate(self) -> float:
        since = self.client.connected_at
        elapsed = time.monotonic() - since if since is not None else 0.0
        return self.client.bytes / elapsed if elapsed > 0 else 0.0

    def render(self, statuses: dict[int, dict | None]):
        from rich import box
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        client, cluster = self.client, self.cluster
        current, done, total = cluster.lab.current, client.bytes, client.nbytes
        kind = "anycast nodes" if cluster.anycast else "plain TCP nodes (no anycast)"
        title = Text(
            f"anycast-tcp lab: a kernel-TCP client downloads from {cluster.lab.anycast(4)}, served by "
            f"{len(cluster.nodes)} {kind}",
            style="bold",
        )
        moves = self.flipper.flips
        head = Text.assemble(
            ("router → ", "bold"),
            (f"node {current}", "bold cyan"),
            f"   the route moved {_times(moves)} (every {self.interval:g} s)   ",
            f"{time.monotonic() - self.started:.1f} s",
        )
        progress = Text.assemble(
            f"{done:,} / {total:,} bytes ",
            (f"{100 * done / total if total else 100:.0f}%", "bold"),
            f"   {self.rate() / 1e6:.1f} MB/s, every byte checked",
        )
        resets = Text.assemble(
            "resets seen by the client: ",
            (str(client.resets), "bold green" if client.resets == 0 else "bold red"),
        )
        if client.result is not None and client.result["error"] is not None:
            resets.append(f"   the download ended: {client.result['error']}", style="bold red")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name, justify in (
            ("node", "left"),
            ("peers", "left"),
            ("conns", "right"),
            ("claims own/held", "right"),
            ("fwd out", "right"),
            ("fwd in", "right"),
        ):
            table.add_column(name, justify=justify, no_wrap=True)
        exited = cluster.exited()
        for k in cluster.nodes:
            s = statuses.get(k)
            name = Text(str(k)) + (Text(" ◀ client", style="bold cyan") if k == current else Text(""))
            if s is None:
                state = f"exited ({exited[k]})" if k in exited else "not answering"
                table.add_row(name, Text(state, style="bold red"), "", "", "", "")
                continue
            if cluster.anycast:
                peers = Text()
                for pid, peer in s.get("peers", {}).items():
                    liveness = peer.get("liveness", "?")
                    style = {"alive": "green", "dead": "bold red"}.get(liveness, "yellow")
                    peers.append(f"{pid}:{liveness} ", style=style)
                claims = f"{s['claims']['own']}/{s['claims']['held']}"
            else:
                peers, claims = Text("- (plain TCP)", style="dim"), "-"
            forwarding = s.get("forwarding", {})
            table.add_row(
                name,
                peers,
                str(s["connections"]["total"]),
                claims,
                f"{forwarding.get('out', 0):,}",
                f"{forwarding.get('in', 0):,}",
            )
        bar = Table.grid(padding=(0, 2))  # a grid ends the bar's line, which ProgressBar alone does not
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=40), progress)
        return Group(title, head, bar, resets, table)


def verdict(anycast: bool, client: Client, flipper, statuses: dict, cluster: Cluster) -> tuple[bool, str]:
    """(passed, the line that says so)."""
    result = client.result
    moves = flipper.flips
    forwarded = sum(s["forwarding"]["out"] for s in statuses.values() if s)
    tail = f"the route moved {_times(moves)}, {forwarded:,} packets were forwarded"
    died = {k: code for k, code in cluster.exited().items()}
    if died:
        k, code = next(iter(died.items()))
        return False, f"FAIL: node {k} exited with status {code} during the run (see {cluster.log_path(k)}); {tail}"
    if result is None:
        code = client.process.poll()
        return False, f"FAIL: the client ended without a result (status {code}; see {client.log}); {tail}"
    got, error = result["bytes"], result["error"]
    if error == "mismatch":
        return False, f"FAIL: byte {result['first_mismatch']:,} of the download is wrong; {tail}"
    if anycast:
        if result["exact"] and result["resets"] == 0 and moves > 0:
            return True, f"PASS: {got:,} bytes exact, 0 resets seen by the client; {tail}"
        if result["exact"]:
            return False, (
                f"FAIL: {got:,} bytes exact, but the route never moved during the download, so nothing was "
                "proved: ask for more --megabytes or a shorter --interval"
            )
        return False, f"FAIL: {_broke(result, flipper)}; {tail}"
    if result["exact"]:
        return False, (
            f"FAIL: without anycast the download of {got:,} bytes survived {_times(moves, 'route move')}; it should "
            "have broken at the first"
        )
    return True, f"BROKEN as expected without anycast: {_broke(result, flipper)}"


def _times(n: int, what: str = "time") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _broke(result: dict, flipper) -> str:
    """How and when the download ended early: ``connection reset after 3,145,728 bytes, at the first route move``."""
    what = {"ECONNRESET": "connection reset", "timeout": "connection stalled", "short": "connection closed early"}
    how = what.get(result["error"], f"connection failed ({result['error']})")
    text = f"{how} after {result['bytes']:,} bytes"
    at = result.get("error_at")
    if at is None:
        return text
    # A move takes effect between its request and its read-back; count those requested before the error.
    moves = sum(1 for (done, _), took in zip(flipper.history, flipper.latencies) if done - took <= at)
    if moves == 0:
        return text + ", before the route had moved"
    return text + (", at the first route move" if moves == 1 else f", after {_times(moves, 'route move')}")


# -- lab up / lab down ------------------------------------------------------------------------------------------


def up(args: argparse.Namespace) -> int:
    _require_root()
    state_file = Path(args.state_file)
    if (state := _read_state(state_file)) is not None and _namespaces_alive(state):
        raise RuntimeError(f"a lab is already up (recorded in {state_file}): take it down with `anycast-tcp lab down`")
    workdir = Path(tempfile.mkdtemp(prefix=f"anycast-tcp-{args.prefix}-"))
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    cluster = None
    try:
        cluster = Cluster.start(args.prefix, UP_NET, workdir, anycast=not args.no_anycast, detach=True)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_name(state_file.name + ".tmp")
        tmp.write_text(json.dumps(cluster.record(), indent=2) + "\n")
        os.replace(tmp, state_file)
    except BaseException as exc:
        with _signals_held():
            if cluster is not None:
                cluster.close()
            if isinstance(exc, Exception):  # a failure: its message may point at a node's log
                print(f"The node.toml files and logs are kept in {workdir}", file=sys.stderr, flush=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, Terminated):
            return 143
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(_hints(cluster.record(), cluster.lab, state_file, args.state_file != STATE_FILE))
    return 0


def _hints(record: dict, lab, state_file: Path, custom_state: bool) -> str:
    client, router, v4 = record["client"], record["router"], lab.anycast(4)
    down = "anycast-tcp lab down" + (f" --state-file {state_file}" if custom_state else "")
    kind = "anycast nodes" if record["anycast"] else "plain TCP nodes (no [cluster])"
    lines = [
        f"The lab is up: {len(record['nodes'])} {kind} answer for {v4} and {lab.anycast(6)} (port {PORT}: downloads, "
        f"port {ECHO_PORT}: echo); the route points at node {lab.current}. Recorded in {state_file}.",
        "",
        "Download 100 MB through the anycast address, every byte checked:",
        f"  ip netns exec {client} {sys.executable} -m appliance.demo_client {v4} {PORT} 100000000",
        "or with curl (the service also speaks enough HTTP):",
        f"  ip netns exec {client} curl -o /dev/null http://{v4}/100000000",
        "",
        "Move the client's route to another node (while a download runs):",
    ]
    for k, n in record["nodes"].items():
        lines.append(f"  node {k}: ip -n {router} route replace {v4}/32 via {n['route_via']}")
    lines += ["", "Each node's status, config and log:"]
    for k, n in record["nodes"].items():
        lines.append(f"  node {k}: anycast-tcp status --socket {n['control_socket']}   ({n['config']}, {n['log']})")
    lines += ["", "Each node's Prometheus metrics (served inside its namespace):"]
    for k, n in record["nodes"].items():
        lines.append(f"  node {k}: ip netns exec {n['netns']} curl -s http://127.0.0.1:{METRICS_PORT}/metrics")
    lines += ["", f"Take it all down: {down}"]
    return "\n".join(lines)


def down(args: argparse.Namespace) -> int:
    from tunnel.netns import run_ip

    state_file = Path(args.state_file)
    state = _read_state(state_file)
    if state is None:
        print(f"No lab is up: there is no record at {state_file}.")
        return 0
    nodes = state.get("nodes", {})
    ours = {int(n["pid"]): n["config"] for n in nodes.values() if _is_our_node(int(n["pid"]), n["config"])}
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_is_our_node(pid, config) for pid, config in ours.items()) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = 0
    for pid, config in ours.items():
        if _is_our_node(pid, config):
            killed += 1
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    removed = 0
    for name in state.get("namespaces", []):
        if os.path.exists(f"/run/netns/{name}"):
            run_ip(["netns", "del", name], check=False)
            removed += 1
    left = [name for name in state.get("namespaces", []) if os.path.exists(f"/run/netns/{name}")]
    if left:
        raise RuntimeError(f"namespaces {', '.join(left)} are still there; the record stays in {state_file}")
    workdir = state.get("workdir")
    if workdir and Path(workdir).name.startswith("anycast-tcp-"):
        shutil.rmtree(workdir, ignore_errors=True)
    state_file.unlink(missing_ok=True)
    extra = f" ({killed} needed SIGKILL)" if killed else ""
    print(f"The lab is down: stopped {len(ours)} node processes{extra}, removed {removed} namespaces.")
    return 0


def _read_state(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the lab's record {path}: {exc}; remove it if no lab is up") from None
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} is not a lab record; remove it if no lab is up")
    return state


def _namespaces_alive(state: dict) -> bool:
    return any(os.path.exists(f"/run/netns/{name}") for name in state.get("namespaces", []))


def _is_our_node(pid: int, config: str) -> bool:
    """Whether ``pid`` is still a running node we started: alive, not a zombie, and running our config (a PID
    the kernel has since handed to another program is left alone)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and os.fsencode(config) in cmdline and b"appliance.cli" in cmdline
