"""The node's observability: the snapshot, the Prometheus endpoint, the control socket and its text view, and
the log configuration. No root needed: stacks run on in-memory devices, the cluster in ``ClusterSim``."""

import asyncio
import io
import json
import logging
import os
import socket
import stat
from types import SimpleNamespace

import pytest
import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from appliance import metrics
from appliance.aio import AnycastStack
from appliance.logs import configure_logging
from appliance.metrics import start_metrics_server
from appliance.node import ClusterConfig
from appliance.peers import ControlTiming
from appliance.sim import ClusterSim
from appliance.snapshot import OUTCOMES, snapshot
from appliance.status import StatusError, query, remove_socket, render, start_status_server
from stack import Stack
from stack.testing import LinkFaults
from tunnel.device import DeviceStats
from tunnel.keys import ClusterKeys
from tunnel.memory import MemoryDevice
from tunnel.peer import PeerStats

from .cluster_apps import Clients, DownloadService

KiB, MiB = 1 << 10, 1 << 20
A, B = "10.9.0.1/24", "10.9.0.2/24"
STARTED = 1_700_000_000.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(100))  # and keep the connection open, ESTABLISHED


class SimNode:
    """What ``snapshot`` reads from a stack, for a node of the simulated cluster (which has no devices)."""

    def __init__(self, node) -> None:
        self.node = node
        self.host = node.host
        self.addresses = ["192.0.2.10/32"]
        self.device = SimpleNamespace(stats=DeviceStats(packets_in=7, packets_out=5, read_batches=3))
        self.socket = SimpleNamespace(stats=PeerStats(datagrams_in=11, datagrams_out=13, send_errors=1))


@pytest.fixture(scope="module")
def cluster() -> ClusterSim:
    """Three nodes and one 2 MiB download over 1 MiB slices, stopped once it is claimed: every part of the
    snapshot has something to show."""
    timing = ControlTiming(heartbeat_interval=0.1, dead_after=1.0, initial_rto=0.05, min_rto=0.02)
    slices = dict(ranges=4096, headroom=384 * KiB, hwm_margin=192 * KiB)
    faults, options = LinkFaults(delay=0.005), dict(timing=timing)
    sim = ClusterSim(nodes=3, seed=1, mean_dwell=0.05, **slices, client_faults=faults, cluster_options=options)
    sim.serve(DownloadService(), 80)
    clients = Clients()
    clients.start(sim.add_client("10.1.0.1", clients), sim.service, 80, 2 * MiB, sim.now)
    nodes = sim.nodes.values()

    def claimed() -> bool:  # the owner's claim is held by both peers, and one has forwarded by it
        held = sum(len(n.claims) for n in nodes) == 2
        return held and any(n.own for n in nodes) and any(n.counters["forward_claimed"] for n in nodes)

    sim.run(claimed, max_time=60)
    assert claimed(), "the download never crossed its high-water mark"
    return sim


def owner_and_forwarder(sim: ClusterSim):
    owner = next(n for n in sim.nodes.values() if n.own)
    forwarder = next(n for n in sim.nodes.values() if n.counters["forward_claimed"])
    return owner, forwarder


def collect_for(node):
    shim = SimNode(node)
    return lambda: snapshot(shim, started_at=STARTED, now=STARTED + 42.0, services=[{"kind": "echo", "listen": "x:7"}])


def test_plain_stack_snapshot_shows_an_established_connection_and_tun_counters():
    async def main():
        left, right = MemoryDevice.pair()
        client, server = Stack(left, [A]), Stack(right, [B])
        async with server, client:
            await server.start_server(echo_once, "10.9.0.2", 7)
            reader, writer = await client.open_connection("10.9.0.2", 7)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            services = [{"kind": "echo", "listen": "10.9.0.2:7"}]
            snap = snapshot(server, started_at=STARTED, now=STARTED + 5.5, services=services)
            writer.close()
        return snap

    snap = run(main())
    assert json.loads(json.dumps(snap)) == snap
    assert (snap["node"], snap["incarnation"], snap["anycast"], snap["uptime"]) == (None, None, False, 5.5)
    assert snap["addresses"] == [B] and snap["services"] == [{"kind": "echo", "listen": "10.9.0.2:7"}]
    conns = snap["connections"]
    assert (conns["total"], conns["by_state"]["ESTABLISHED"], conns["listeners"]) == (1, 1, 1)
    tun = snap["tun"]
    assert tun["packets_in"] > 0 and tun["packets_out"] > 0 and tun["bytes_in"] > 0 and tun["read_batches"] > 0
    # On a plain stack every packet the TUN gives goes to the host, and the host's output to the TUN.
    assert snap["segments"] == {"in": tun["packets_in"], "out": tun["packets_out"], "retransmitted": 0}
    assert snap["claims"] == {"own": 0, "held": 0, "acknowledged": 0, "announced": 0, "released": 0, "ack_seconds": {}}
    assert snap["peers"] == {} and snap["control"] == {}
    assert snap["forwarding"] == {"out": 0, "in": 0, "flooded_copies": 0, "by_outcome": {}}
    assert snap["drops"]["tunnel"] == {} and snap["drops"]["node"] == {}
    assert set(snap["peer_socket"].values()) <= {0, ""}


def test_snapshot_of_a_cluster_node_shows_forwarding_claims_and_peers(cluster):
    owner, forwarder = owner_and_forwarder(cluster)
    theirs = collect_for(forwarder)()
    assert json.loads(json.dumps(theirs)) == theirs
    assert theirs["anycast"] and theirs["node"] == forwarder.node_id and theirs["incarnation"] == 1
    by_outcome = theirs["forwarding"]["by_outcome"]
    assert set(by_outcome) == set(OUTCOMES)
    assert by_outcome["forward_claimed"] == forwarder.counters["forward_claimed"] > 0
    assert by_outcome["forward_by_ack"] == forwarder.counters["forward_by_ack"]
    assert theirs["forwarding"]["out"] == forwarder.counters["forwarded_out"] > 0
    assert theirs["claims"]["held"] == 1 and theirs["claims"]["own"] == 0
    address = f"10.255.0.{owner.node_id}:6080"
    assert theirs["peers"][str(owner.node_id)] == {"liveness": "alive", "address": address}
    assert theirs["control"]["heartbeats_sent"] > 0 and theirs["control"]["peer_deaths"] == 0
    assert theirs["drops"]["tunnel"]["bad_tag"] == 0  # every reason listed, at zero
    assert theirs["peer_socket"]["datagrams_in"] == 11

    mine = collect_for(owner)()
    claims = mine["claims"]
    assert (claims["own"], claims["acknowledged"], claims["announced"], claims["released"]) == (1, 1, 1, 0)
    assert claims["ack_seconds"]["1.0"] >= 0
    assert mine["forwarding"]["in"] == owner.counters["forwarded_in"] > 0
    assert mine["connections"]["by_state"]["ESTABLISHED"] == 1


def test_snapshot_reads_a_real_anycast_stack_and_its_peer_socket():
    async def main():
        keys, peers = ClusterKeys(send_id=1, keys={1: bytes(32)}), {2: ("127.0.0.1", 9)}
        device, _ = MemoryDevice.pair()
        async with AnycastStack(device, ["192.0.2.10/32"], cluster=ClusterConfig(1, 4), peers=peers, keys=keys) as st:
            await st.open_peer_socket(("127.0.0.1", 0))
            await asyncio.sleep(0.05)  # the first heartbeat and epoch snapshot go out
            return snapshot(st, started_at=STARTED, now=STARTED)

    snap = run(main())
    assert snap["anycast"] and snap["node"] == 1
    assert snap["peers"] == {"2": {"liveness": "unknown", "address": "127.0.0.1:9"}}
    assert snap["peer_socket"]["datagrams_out"] >= 1 and snap["control"]["heartbeats_sent"] >= 1


def http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One exchange with a raw kernel socket: (status, headers, body), reading until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split()[1]), headers, body


async def scrape(collect, *requests: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    server = await start_metrics_server("127.0.0.1", 0, collect)
    port = server.sockets[0].getsockname()[1]
    try:
        return [await asyncio.to_thread(http, port, request) for request in requests]
    finally:
        server.close()
        await server.wait_closed()


GET = b"GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n"


def samples(body: bytes) -> dict[tuple, float]:
    families = list(text_string_to_metric_families(body.decode()))
    assert all(f.name.startswith("anycast_tcp_") for f in families)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_metrics_match_the_snapshot(cluster):
    owner, forwarder = owner_and_forwarder(cluster)
    collect = collect_for(forwarder)
    snap = collect()
    ((status, headers, body),) = run(scrape(collect, GET))
    assert status == 200 and headers["content-type"] == CONTENT_TYPE_LATEST and headers["connection"] == "close"
    got = samples(body)

    def value(name: str, **labels) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("anycast_tcp_node_info", node=str(forwarder.node_id), incarnation="1", anycast="true") == 1
    assert value("anycast_tcp_uptime_seconds") == 42.0
    for state, n in snap["connections"]["by_state"].items():
        assert value("anycast_tcp_connections", state=state) == n
    assert value("anycast_tcp_segments_received_total") == snap["segments"]["in"]
    assert value("anycast_tcp_segments_sent_total") == snap["segments"]["out"]
    for outcome, n in snap["forwarding"]["by_outcome"].items():
        assert value("anycast_tcp_classified_segments_total", outcome=outcome) == n
    assert value("anycast_tcp_classified_segments_total", outcome="forward_claimed") > 0
    assert value("anycast_tcp_forwarded_packets_total", direction="out") == snap["forwarding"]["out"]
    assert value("anycast_tcp_forwarded_packets_total", direction="in") == snap["forwarding"]["in"]
    assert value("anycast_tcp_claims_held") == 1 and value("anycast_tcp_claims_own") == 0
    assert value("anycast_tcp_peer_up", peer=str(owner.node_id), address=f"10.255.0.{owner.node_id}:6080") == 1
    assert value("anycast_tcp_control_events_total", event="heartbeats_sent") == snap["control"]["heartbeats_sent"]
    assert value("anycast_tcp_drops_total", where="tunnel", reason="bad_tag") == 0
    assert value("anycast_tcp_tun_packets_total", direction="in") == 7
    assert value("anycast_tcp_tun_read_batches_total") == 3
    assert value("anycast_tcp_peer_socket_datagrams_total", direction="out") == 13
    assert value("anycast_tcp_peer_socket_errors_total", op="send") == 1

    ((_, _, body),) = run(scrape(collect_for(owner), GET))
    got = samples(body)
    assert value("anycast_tcp_claims_own") == 1 and value("anycast_tcp_claims_announced_total") == 1
    assert value("anycast_tcp_claims_acknowledged") == 1


def test_metrics_server_answers_only_get_metrics_and_refuses_an_oversized_request():
    huge = b"GET /metrics HTTP/1.1\r\nX-Padding: " + b"a" * (4 * metrics.MAX_REQUEST) + b"\r\n\r\n"
    requests = [b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"POST /metrics HTTP/1.1\r\n\r\n"]
    ok, missing, post, garbage, oversized = run(scrape(collect_for_plain(), *requests, b"HELLO\r\n\r\n", huge))
    assert ok[0] == 200 and b"anycast_tcp_connections" in ok[2]
    assert missing[0] == 404
    assert post[0] == 405 and post[1]["allow"] == "GET"
    assert garbage[0] == 400
    assert oversized[0] == 431
    ((broken, _, _),) = run(scrape(lambda: 1 / 0, GET))
    assert broken == 500  # collecting failed


def test_metrics_server_closes_a_silent_connection_after_its_timeout(monkeypatch):
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT", 0.2)

    async def main():
        server = await start_metrics_server("127.0.0.1", 0, collect_for_plain())
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, unanswered
            writer.close()
        finally:
            server.close()

    run(main())


def collect_for_plain():
    """A snapshot of a plain stack that never ran: every section present, all zero."""
    shim = SimpleNamespace(
        host=SimpleNamespace(
            connections={}, listeners={}, drops={}, packets_in=0, packets_out=0, retransmits_of_closed=0
        ),
        addresses=[A],
        device=SimpleNamespace(stats=DeviceStats()),
    )
    return lambda: snapshot(shim, started_at=STARTED, now=STARTED)


async def ask(path: str, collect) -> dict:
    """Serve ``collect`` on ``path``, query it from a thread as the CLI would, and stop."""
    server = await start_status_server(path, collect)
    try:
        return await asyncio.to_thread(query, path)
    finally:
        server.close()
        await server.wait_closed()


def test_status_query_returns_the_snapshot_and_the_socket_is_group_only(tmp_path, cluster):
    path = str(tmp_path / "run" / "node.sock")  # the directory does not exist yet
    collect = collect_for(cluster.nodes[1])
    assert run(ask(path, collect)) == json.loads(json.dumps(collect()))
    assert os.path.isdir(tmp_path / "run")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    remove_socket(path)
    assert not os.path.exists(path)
    remove_socket(path)  # already gone: nothing to do


def test_query_without_a_node_names_the_path_and_the_fix(tmp_path):
    path = str(tmp_path / "missing.sock")
    with pytest.raises(StatusError, match="is the node running") as raised:
        query(path)
    assert path in str(raised.value) and "\n" not in str(raised.value)


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "node.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # a node that died without removing its socket
    with pytest.raises(StatusError, match="nothing answers"):
        query(path)
    assert run(ask(path, collect_for_plain()))["anycast"] is False


def test_a_path_held_by_a_live_node_or_by_a_plain_file_is_refused_and_left_alone(tmp_path):
    path = str(tmp_path / "node.sock")

    async def main():
        first = await start_status_server(path, collect_for_plain())
        try:
            with pytest.raises(OSError, match=f"another node answers on {path}"):
                await start_status_server(path, collect_for_plain())
            return await asyncio.to_thread(query, path)  # the first one still answers
        finally:
            first.close()

    assert run(main())["uptime"] == 0
    precious = tmp_path / "precious"
    precious.write_text("data")
    with pytest.raises(OSError, match="is not a socket"):
        run(start_status_server(str(precious), collect_for_plain()))
    remove_socket(str(precious))
    assert precious.read_text() == "data"


def test_render_shows_peers_claims_forwarding_and_drops(cluster):
    owner, forwarder = owner_and_forwarder(cluster)
    status = collect_for(forwarder)()
    status["drops"]["host"] = {"bad_tcp": 3}
    text = render(status)
    assert f"node {forwarder.node_id} (incarnation 1), anycast, up 0m 42s" in text
    peer_rows = [line for line in text.splitlines() if "10.255.0." in line]
    assert len(peer_rows) == 2 and all("alive" in row for row in peer_rows)
    assert len({row.index("alive") for row in peer_rows}) == 1  # aligned
    assert "forward_claimed" in text and "held 1" in text and "ESTABLISHED" not in text
    assert "bad_tcp" in text and "heartbeats_sent" in text
    assert "ESTABLISHED" in render(collect_for(owner)())
    plain = render(collect_for_plain()())
    assert plain.startswith("plain node (no cluster)") and "peers" not in plain
    assert render({}).startswith("plain node")  # a status from an older node lacks keys: still renders


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_object_per_line_with_event_and_level(restore_logging):
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = structlog.get_logger("test")
    log.info("claims.made", node=2)
    log.debug("too.verbose")
    logging.getLogger("asyncio").warning("slow callback %s", "x")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in lines] == [("claims.made", "info"), ("slow callback x", "warning")]
    assert lines[0]["node"] == 2 and lines[0]["timestamp"].endswith("Z")
    assert lines[1]["logger"] == "asyncio"


def test_auto_format_is_console_on_a_terminal_and_a_bad_level_names_the_allowed_ones(restore_logging):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    configure_logging("debug", "auto", stream)
    structlog.get_logger("test").debug("hello", x=1)
    assert "hello" in stream.getvalue() and not stream.getvalue().startswith("{")
    with pytest.raises(ValueError, match="debug, info, warning, error"):
        configure_logging("verbose")
    with pytest.raises(ValueError, match="auto, json, console"):
        configure_logging("info", "xml")
