"""The anycast mechanism in real namespaces: three nodes, each our stack on its own TUN answering for the same
anycast address, a kernel-TCP client, and a router whose route to the anycast address moves to another node every
200 ms while downloads run. With forwarding the downloads finish byte-exact and the client never sees a RST; the
same run with forwarding disabled breaks them, which proves the mechanism is what saves them.

Small slices (1024 ranges: 4 MiB each, 1 MiB headroom, claims 512 KiB before the end) make every download cross
the high-water mark and the slice's end, so the claims and the send fence are on the path too.
"""

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.lab import Lab
from tunnel.keys import generate_key_line

from .conftest import require_lab, run_client

ROOT = Path(__file__).resolve().parents[2]
PORT = 80
MiB = 1 << 20
SLICES = ["--ranges", "1024", "--headroom", str(1 * MiB), "--hwm-margin", str(MiB // 2)]


@pytest.fixture(scope="module")
def lab():
    require_lab()
    with Lab.build(nodes=3, net=42) as lab:
        yield lab


@contextlib.contextmanager
def nodes(lab: Lab, tmp_path: Path, *, forwarding: bool = True, underlay: int = 4):
    """Start a node process in every node namespace; on exit stop them (SIGTERM) and yield their final stats
    through the returned dict (node id -> stats)."""
    key_file = tmp_path / "cluster.key"
    key_file.write_text(generate_key_line(1) + "\n")
    key_file.chmod(0o600)
    processes, stats = {}, {}
    try:
        for k in lab.node_numbers:
            host, port = lab.node_underlay(k, underlay)
            argv = [sys.executable, "-m", "tests.anycast.node_main", "--id", str(k), "--tun", lab.tun_name(k)]
            argv += ["--service", f"{lab.anycast(4)}/32", "--service", f"{lab.anycast(6)}/128", "--port", str(PORT)]
            argv += ["--listen", f"[{host}]:{port}", "--key-file", str(key_file), *SLICES]
            argv += ["--stats-file", str(tmp_path / f"node{k}.json")]
            for j in lab.node_numbers:
                if j != k:
                    peer_host, peer_port = lab.node_underlay(j, underlay)
                    argv += ["--peer", f"{j}=[{peer_host}]:{peer_port}"]
            if not forwarding:
                argv.append("--no-forwarding")
            with open(tmp_path / f"node{k}.log", "w") as log:
                processes[k] = lab.node_ns(k).popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        for k, process in processes.items():
            line = process.stdout.readline()
            assert line.strip() == "ready", f"node {k} did not start (exit {process.poll()})"
        yield stats
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for k, process in processes.items():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            path = tmp_path / f"node{k}.json"
            if path.exists():
                stats[k] = json.loads(path.read_text())


def total(stats: dict, counter: str) -> int:
    return sum(s.get("counters", {}).get(counter, 0) for s in stats.values())


def nodes_reached(lab: Lab, before: dict, after: dict) -> int:
    return sum(after[k].tx_packets - before[k].tx_packets > 100 for k in lab.node_numbers)


def test_a_gigabyte_download_survives_the_route_moving_every_200ms(lab, tmp_path):
    with nodes(lab, tmp_path) as stats:
        before = lab.router_counters()
        with lab.flipper(0.2) as flipper:
            result = run_client(lab, 4, nbytes=1000 * MiB, timeout=10.0, port=PORT, deadline=600)
        after = lab.router_counters()
    (conn,) = result["connections"]
    assert conn["error"] is None and conn["exact"] and conn["bytes"] == 1000 * MiB, conn
    assert flipper.flips >= 5 and nodes_reached(lab, before, after) == 3
    assert total(stats, "forwarded_out") > 1000, stats
    assert total(stats, "claims_made") == 1 and total(stats, "claims_released") <= 1
    assert total(stats, "owner_reset") == 0 and total(stats, "dead_owner_reset") == 0


def test_a_hundred_concurrent_downloads_survive_the_route_moving(lab, tmp_path):
    with nodes(lab, tmp_path) as stats, lab.flipper(0.2) as flipper:
        result = run_client(lab, 4, nbytes=6 * MiB, connections=100, timeout=15.0, port=PORT, deadline=600)
    bad = [c for c in result["connections"] if c["error"] is not None or not c["exact"]]
    assert not bad and result["exact"] == 100, (bad[:5], result["errors"])
    assert flipper.flips >= 2
    assert total(stats, "claims_made") == 100
    assert total(stats, "forwarded_out") > 1000


def test_ipv6_service_over_an_ipv6_underlay(lab, tmp_path):
    with nodes(lab, tmp_path, underlay=6) as stats, lab.flipper(0.2):
        result = run_client(lab, 6, nbytes=200 * MiB, timeout=10.0, port=PORT, deadline=300)
    (conn,) = result["connections"]
    assert conn["error"] is None and conn["exact"], conn
    assert total(stats, "forwarded_out") > 100 and total(stats, "claims_made") == 1


def test_without_forwarding_the_same_run_breaks(lab, tmp_path):
    with nodes(lab, tmp_path, forwarding=False), lab.flipper(0.2):
        result = run_client(lab, 4, nbytes=1000 * MiB, connections=4, timeout=10.0, port=PORT, deadline=300)
    errors = [c["error"] for c in result["connections"]]
    assert all(error is not None for error in errors), result
    assert "ECONNRESET" in errors, errors
