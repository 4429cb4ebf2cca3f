"""``anycast-tcp lab demo | up | down`` end to end, as a newcomer runs them: real namespaces, three real
``anycast-tcp run`` processes, a kernel-TCP client and a route that moves every 200 ms.

The demo passes only with every byte exact and no reset; without anycast it must break; whichever way it ends
(verdict, Ctrl-C, SIGTERM) it leaves no namespace, node process or temporary directory behind. Each test gives
the demo a name prefix of its own, so leftovers are found by that prefix alone.
"""

import asyncio
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance import demo, demo_service, pattern
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
LAB = [sys.executable, "-m", "appliance.cli", "lab"]
CLIENT = [sys.executable, "-m", "appliance.demo_client"]
SERVICE = ["192.0.2.10", "80"]  # the lab's anycast address and the demo's download service


def lab_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LAB, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def processes(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (the demo's temporary directory: every node's config is there)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmdline and state != "Z":
                found.append(int(entry))
    return found


def workdirs(prefix: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"anycast-tcp-{prefix}-*"))


def leftovers(prefix: str) -> dict:
    return {
        "namespaces": namespaces(prefix),
        "processes": processes(f"anycast-tcp-{prefix}-"),
        "workdirs": workdirs(prefix),
    }


NOTHING = {"namespaces": [], "processes": [], "workdirs": []}


@pytest.fixture
def prefix():
    """A namespace prefix no other run uses; whatever a failed test left under it is removed afterwards."""
    require(os.geteuid() == 0, "needs root for network namespaces and TUN devices")
    require(shutil.which("ip") is not None, "needs iproute2's `ip` command")
    prefix = "d" + secrets.token_hex(2)
    yield prefix
    left = leftovers(prefix)
    for pid in left["processes"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in left["namespaces"]:
        subprocess.run(["ip", "netns", "del", name], check=False)
    for path in left["workdirs"]:
        shutil.rmtree(path, ignore_errors=True)


def wait_until_gone(prefix: str, timeout: float = 5.0) -> dict:
    """Processes killed by the demo's teardown may take a moment to leave /proc; give them that moment."""
    deadline = time.monotonic() + timeout
    while (left := leftovers(prefix)) != NOTHING and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# -- the pieces, without root: the service on the kernel's TCP, the client against it, the verdict and the view ---


@contextlib.contextmanager
def kernel_download_server():
    """``demo_service.download`` behind a kernel asyncio server on 127.0.0.1, in a thread; yields its port."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(demo_service.download, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


def ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
        return bytes(data)


def test_the_pattern_checks_any_offset_and_finds_the_first_wrong_byte():
    offset = 3 * pattern.PERIOD - 17  # a run that wraps the period
    data = pattern.chunk(offset, 5000)
    assert pattern.verify(offset, data) and not pattern.verify(offset + 1, data)
    bad = bytearray(data)
    bad[1234] ^= 1
    assert pattern.first_mismatch(offset, bad) == offset + 1234


def test_download_service_answers_get_and_http_and_closes_on_anything_else():
    with kernel_download_server() as port:
        assert ask(port, b"GET 3000000\n") == pattern.chunk(0, 3_000_000)
        head, _, body = ask(port, b"GET /5000 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 5000" in head and body == pattern.chunk(0, 5000)
        assert ask(port, b"PUT 10\n") == b""
        assert ask(port, b"GET lots\n") == b""


def test_demo_client_checks_every_byte_and_reports_progress_and_a_result():
    with kernel_download_server() as port:
        done = subprocess.run(
            [*CLIENT, "127.0.0.1", str(port), "20000000", "--every", "0.01"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert events[0]["event"] == "connected" and events[-1]["event"] == "result"
    result = events[-1]
    assert result["exact"] and result["bytes"] == 20_000_000 and result["resets"] == 0 and result["error"] is None
    seen = [e["bytes"] for e in events if e["event"] == "progress"]
    assert seen == sorted(seen)


class FakeFlipper:
    def __init__(self, moves_at: list[float]) -> None:
        self.history = [(t + 0.001, 1 + i % 3) for i, t in enumerate(moves_at)]
        self.latencies = [0.001] * len(moves_at)
        self.flips = len(moves_at)


class FakeCluster:
    def __init__(self, anycast: bool = True, exited: dict | None = None) -> None:
        self.anycast = anycast
        self.nodes = {1: None, 2: None, 3: None}
        self.lab = type("FakeLab", (), {"current": 2, "anycast": staticmethod(lambda family=4: "192.0.2.10")})()
        self._exited = exited or {}

    def exited(self) -> dict:
        return self._exited

    def log_path(self, k: int) -> str:
        return f"/tmp/node{k}.log"


def fake_client(nbytes: int, **result) -> SimpleNamespace:
    full = {"bytes": nbytes, "exact": True, "resets": 0, "error": None, "first_mismatch": None, "error_at": None}
    full.update(result)
    return SimpleNamespace(
        result=full, nbytes=nbytes, bytes=full["bytes"], resets=full["resets"], connected_at=None, log="client.log"
    )


def node_status(k: int, *, own: int, held: int, out: int, into: int) -> dict:
    peers = {str(j): {"liveness": "alive", "address": f"10.47.0.{j}:6080"} for j in (1, 2, 3) if j != k}
    return {
        "node": k,
        "anycast": True,
        "connections": {"total": 1 if own else 0, "by_state": {}},
        "claims": {"own": own, "held": held, "announced": own, "released": 0, "acknowledged": own},
        "peers": peers,
        "forwarding": {"out": out, "in": into, "by_outcome": {}},
    }


def test_verdicts_say_what_happened_in_one_line():
    statuses = {1: node_status(1, own=1, held=0, out=0, into=900), 2: node_status(2, own=0, held=1, out=1234, into=0)}
    ok, line = demo.verdict(True, fake_client(200_000_000), FakeFlipper([1.0, 2.0]), statuses, FakeCluster())
    assert ok and line == (
        "PASS: 200,000,000 bytes exact, 0 resets seen by the client; the route moved 2 times, 1,234 packets were "
        "forwarded"
    )
    ok, line = demo.verdict(True, fake_client(10), FakeFlipper([]), statuses, FakeCluster())
    assert not ok and line.startswith("FAIL: 10 bytes exact, but the route never moved")

    reset = fake_client(30_000_000, bytes=3_145_728, exact=False, resets=1, error="ECONNRESET", error_at=1.01)
    ok, line = demo.verdict(False, reset, FakeFlipper([1.0, 2.0]), {}, FakeCluster(anycast=False))
    assert ok
    assert line == "BROKEN as expected without anycast: connection reset after 3,145,728 bytes, at the first route move"
    ok, line = demo.verdict(True, reset, FakeFlipper([1.0, 2.0]), statuses, FakeCluster())
    assert not ok and line.startswith("FAIL: connection reset after 3,145,728 bytes, at the first route move;")
    ok, line = demo.verdict(False, fake_client(5), FakeFlipper([1.0]), {}, FakeCluster(anycast=False))
    assert not ok and "survived 1 route move;" in line

    ok, line = demo.verdict(True, fake_client(5), FakeFlipper([1.0]), statuses, FakeCluster(exited={3: 1}))
    assert not ok and line.startswith("FAIL: node 3 exited with status 1 during the run (see /tmp/node3.log)")


def test_the_live_view_shows_the_route_the_download_and_every_node():
    from rich.console import Console

    statuses = {
        1: node_status(1, own=1, held=0, out=0, into=4321),
        2: node_status(2, own=0, held=1, out=2100, into=0),
        3: None,
    }
    client = fake_client(200_000_000, bytes=60_000_000)
    watch = demo._Watch(FakeCluster(exited={3: 1}), client, FakeFlipper([1.0, 2.0, 3.0]), 0.2)
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(watch.render(statuses))
    text = console.export_text()
    assert "router → node 2" in text and "the route moved 3 times" in text
    assert "60,000,000 / 200,000,000 bytes" in text and "resets seen by the client: 0" in text
    rows = {m[1]: line for line in text.splitlines() if (m := re.match(r"\s*([123])\s", line))}
    assert "2:alive 3:alive" in rows["1"] and "1/0" in rows["1"] and "4,321" in rows["1"]
    assert "◀ client" in rows["2"] and "0/1" in rows["2"] and "2,100" in rows["2"]
    assert "exited (1)" in rows["3"]


# -- the real thing, as root -----------------------------------------------------------------------------------


@pytest.mark.root
def test_demo_download_is_exact_while_the_route_moves(prefix, tmp_path):
    # Enough to outlast a few route moves at the speed the nodes reach with TUN offloads (over 1 Gbit/s).
    timeline = tmp_path / "timeline.json"
    done = lab_cli("demo", "--megabytes", "600", "--prefix", prefix, "--timeline", str(timeline))
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"PASS: 600,000,000 bytes exact, 0 resets seen by the client; "
        r"the route moved (\d+) times?, ([\d,]+) packets were forwarded",
        verdict,
    )
    assert match, verdict
    assert int(match[1]) >= 1 and int(match[2].replace(",", "")) > 0
    assert wait_until_gone(prefix) == NOTHING
    # The timeline for bench/plot_route_moves.py: the bytes as they came, and every route move, on one clock.
    run = json.loads(timeline.read_text())
    assert run["anycast"] and run["verdict"] == verdict
    assert run["progress"][-1][1] == 600_000_000 and len(run["moves"]) >= int(match[1])
    times = [t for t, _ in run["progress"]]
    assert times == sorted(times) and run["moves"][0][0] < times[-1]


@pytest.mark.root
def test_without_anycast_the_first_route_move_resets_the_download(prefix):
    # Enough bytes to outlast the first route move however fast the plain node sends (it has TUN offloads).
    done = lab_cli("demo", "--megabytes", "1000", "--no-anycast", "--prefix", prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"BROKEN as expected without anycast: connection reset after ([\d,]+) bytes, at the first route move",
        verdict,
    )
    assert match, verdict
    assert int(match[1].replace(",", "")) < 1_000_000_000
    assert wait_until_gone(prefix) == NOTHING


@pytest.mark.root
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_download_tears_everything_down(prefix, sig, status):
    demo = subprocess.Popen(
        [*LAB, "demo", "--megabytes", "100000", "--prefix", prefix],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Mid-run: the first progress line (one a second without a terminal) means the download is flowing.
        progress = threading.Event()

        def watch() -> None:
            for line in demo.stdout:
                if line.startswith("[") and "bytes" in line:
                    progress.set()

        threading.Thread(target=watch, daemon=True).start()
        assert progress.wait(60), f"no progress line (exit {demo.poll()})"
        assert len(namespaces(prefix)) == 6 and len(processes(f"anycast-tcp-{prefix}-")) >= 3
        demo.send_signal(sig)
        assert demo.wait(timeout=30) == status
        assert "Traceback" not in demo.stderr.read()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert wait_until_gone(prefix) == NOTHING


@pytest.mark.root
def test_lab_up_serves_until_lab_down_removes_everything(prefix, tmp_path):
    state_file = tmp_path / "lab.json"
    up = lab_cli("up", "--prefix", prefix, "--state-file", str(state_file))
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads(state_file.read_text())
    try:
        assert sorted(namespaces(prefix)) == sorted(state["namespaces"])
        assert "anycast-tcp lab down" in up.stdout and state["client"] in up.stdout

        # The lab serves: the checking client downloads through the anycast address from the client namespace.
        download = subprocess.run(
            ["ip", "netns", "exec", state["client"], *CLIENT, *SERVICE, "5000000"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        result = json.loads(download.stdout.splitlines()[-1])
        assert download.returncode == 0 and result["exact"] and result["bytes"] == 5_000_000, result

        again = lab_cli("up", "--prefix", prefix, "--state-file", str(state_file))
        assert again.returncode == 1 and "already up" in again.stderr
    finally:
        down = lab_cli("down", "--state-file", str(state_file))
    assert down.returncode == 0 and "The lab is down" in down.stdout, down.stdout + down.stderr
    assert not state_file.exists()
    assert wait_until_gone(prefix) == NOTHING

    twice = lab_cli("down", "--state-file", str(state_file))
    assert twice.returncode == 0 and "No lab is up" in twice.stdout
