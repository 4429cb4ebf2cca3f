"""The ``anycast-tcp`` command end to end: config errors are one line and exit 2, keygen's line loads, and a real
``run`` in a network namespace serves, answers ``status`` and a metrics scrape, reloads on SIGHUP and stops on
SIGTERM within its grace period, resetting what is still open."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tunnel.keys import ClusterKeys
from tunnel.netns import NetNamespace

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "appliance.cli"]
SERVICE = "192.0.2.77"
CLIENT = "198.51.100.77"


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=60, **kwargs)


# -- no root needed ------------------------------------------------------------------------------------------------


def test_keygen_prints_a_line_the_key_file_parser_takes():
    done = cli("keygen", "--key-id", "7")
    assert done.returncode == 0
    keys = ClusterKeys.parse(done.stdout)
    assert keys.send_id == 7 and len(keys.keys[7]) == 32
    assert cli("keygen").stdout != cli("keygen").stdout  # fresh each time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\nid = 1\n", "[tun]: missing"),
        (
            '[node]\nid = 1\n[tun]\nname = "t0"\naddresses = ["192.0.2.1"]\n',
            "tun.addresses[0]: '192.0.2.1' has no prefix",
        ),
        ("[node\n", "not valid TOML"),
    ],
)
def test_check_config_names_the_problem_in_one_line_and_exits_2(tmp_path, text, message):
    path = tmp_path / "node.toml"
    path.write_text(text)
    done = cli("check-config", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("anycast-tcp: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_run_refuses_a_bad_config_before_touching_anything(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(config_text(tmp_path, handler="nosuchmodule.app:handle"))
    done = cli("run", "--config", str(path))
    assert done.returncode == 2
    assert "services[1].handler" in done.stderr and "nosuchmodule" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_accepts_a_good_file(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(config_text(tmp_path))
    done = cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_status_without_a_node_says_where_it_looked(tmp_path):
    done = cli("status", "--socket", str(tmp_path / "none.sock"))
    assert done.returncode == 1
    assert str(tmp_path / "none.sock") in done.stderr and "Traceback" not in done.stderr


def config_text(tmp_path: Path, *, handler: str = "appliance.services:echo", grace: str = "3s") -> str:
    return f"""
[node]
id = 1
control_socket = "{tmp_path}/node.sock"
grace = "{grace}"
[tun]
name = "atcli0"
addresses = ["{SERVICE}/32"]
[[services]]
kind = "echo"
listen = "{SERVICE}:7"
[[services]]
kind = "python"
listen = "{SERVICE}:8"
handler = "{handler}"
[metrics]
listen = "127.0.0.1:9109"
[log]
level = "info"
format = "json"
"""


# -- a real node in a namespace ---------------------------------------------------------------------------------


@pytest.fixture
def namespace():
    require(os.geteuid() == 0, "needs root for a network namespace and a TUN device")
    with NetNamespace.create("tcli") as ns:
        # The kernel's own address for the clients: the TUN holds only the service address, routed into it.
        ns.ip("addr", "add", f"{CLIENT}/32", "dev", "lo")
        yield ns


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(tmp_path: Path) -> dict | None:
    done = cli("status", "--socket", str(tmp_path / "node.sock"), "--json")
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.mark.root
def test_run_serves_reports_and_stops_on_sigterm(namespace, tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(config_text(tmp_path))
    log = open(tmp_path / "node.log", "w")  # noqa: SIM115 (closed below; the node writes into it)
    node = namespace.popen([*CLI, "run", "--config", str(path)], cwd=ROOT, stdout=log, stderr=log)
    try:
        state = wait_for(lambda: status_of(tmp_path), what="the node's status socket")
        assert state["node"] == 1 and state["anycast"] is False
        serving = [json.loads(line) for line in (tmp_path / "node.log").read_text().splitlines()]
        assert [e["event"] for e in serving if e["event"] == "node.serving"] == ["node.serving"]

        # An echo round trip from a kernel socket in the namespace, through the TUN, to our stack.
        echo = namespace.run(
            [sys.executable, "-c", ECHO_CLIENT, SERVICE, "7", CLIENT], capture_output=True, text=True, timeout=20
        )
        assert echo.stdout.strip() == "ok", echo.stderr

        # The human view and the metrics scrape agree with the status.
        human = cli("status", "--socket", str(tmp_path / "node.sock"))
        assert human.returncode == 0 and "connections" in human.stdout.lower()
        scrape = namespace.run(
            [sys.executable, "-c", SCRAPE, "127.0.0.1", "9109"], capture_output=True, text=True, timeout=20
        )
        assert scrape.returncode == 0 and "anycast_tcp_" in scrape.stdout

        # SIGHUP re-reads the file; a broken file is refused and the node keeps running.
        path.write_text("[node\n")
        node.send_signal(signal.SIGHUP)
        wait_for(lambda: "node.reload_refused" in (tmp_path / "node.log").read_text(), what="the refused reload")
        assert node.poll() is None

        # SIGTERM with a connection still open: the node waits out the grace period, resets it, exits 0.
        holder = namespace.popen(
            [sys.executable, "-c", HOLD_OPEN, SERVICE, "7", CLIENT], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout.readline().strip() == "connected"
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=20) == 0
        assert 2.5 <= time.monotonic() - started < 15  # the 3 s grace, then down
        assert holder.stdout.readline().strip() in ("reset", "eof")
        holder.wait(timeout=10)
        assert not (tmp_path / "node.sock").exists()
        assert "atcli0" not in namespace.ip("link", "show")  # the TUN and its routes went with it
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        log.close()


ECHO_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10, source_address=(sys.argv[3], 0))
s.sendall(b"hello anycast" * 1000)
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(65536):
    data += chunk
print("ok" if data == b"hello anycast" * 1000 else f"bad {len(data)}")
"""

SCRAPE = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
head, _, body = data.partition(b"\\r\\n\\r\\n")
assert head.startswith(b"HTTP/1.1 200"), head
print(body.decode())
"""

HOLD_OPEN = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30, source_address=(sys.argv[3], 0))
print("connected", flush=True)
try:
    data = s.recv(1)
    print("eof" if data == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


@pytest.mark.root
def test_run_drops_to_an_unprivileged_user_once_its_tun_and_sockets_are_open(namespace, tmp_path):
    import tempfile

    # The control socket's directory must be the user's to write (systemd's RuntimeDirectory= does that).
    run_dir = Path(tempfile.mkdtemp(prefix="atcp-priv-"))
    run_dir.chmod(0o777)
    path = tmp_path / "node.toml"
    path.write_text(config_text(run_dir).replace("grace = ", 'user = "nobody"\ngrace = '))
    log = open(tmp_path / "node.log", "w")  # noqa: SIM115 (closed below; the node writes into it)
    node = namespace.popen([*CLI, "run", "--config", str(path)], cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for(lambda: status_of(run_dir), what="the node's status socket")
        wait_for(lambda: "node.privileges_dropped" in (tmp_path / "node.log").read_text(), what="the drop")
        ids = {
            line.split(":")[0]: line.split()[1:]
            for line in Path(f"/proc/{node.pid}/status").read_text().splitlines()
            if line.startswith(("Uid:", "Gid:", "Groups:"))
        }
        nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
        assert ids["Uid"] == [nobody] * 4 and ids["Groups"] == []  # real, effective, saved, filesystem
        echo = namespace.run(
            [sys.executable, "-c", ECHO_CLIENT, SERVICE, "7", CLIENT], capture_output=True, text=True, timeout=20
        )
        assert echo.stdout.strip() == "ok", echo.stderr  # still serving through the TUN it opened as root
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=20) == 0, (tmp_path / "node.log").read_text()[-2000:]
        assert not (run_dir / "node.sock").exists()
        assert "atcli0" not in namespace.ip("link", "show")  # the TUN went with its descriptor, no root needed
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        log.close()
        for leftover in run_dir.iterdir():
            leftover.unlink()
        run_dir.rmdir()
