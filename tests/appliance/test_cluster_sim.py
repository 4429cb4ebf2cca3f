"""The whole cluster in one process (appliance.sim): nodes, plain-TCP clients, a router that moves each client
between nodes at random moments and per packet, and a lossy, reordering control network.

Invariants, for every run: every connection's bytes arrive exact and it closes normally; no RST ever reaches a
client; only a connection's owner ever answers its client (other nodes forward); after every connection has
closed, every node's claims are gone.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.node import DeadOwner
from appliance.peers import ControlTiming, Liveness
from appliance.sim import ClusterSim
from stack.tcp.config import TcpConfig
from stack.testing import LinkFaults

from .cluster_apps import Clients, DownloadService

KiB, MiB = 1 << 10, 1 << 20
PORT = 80
# 4096 ranges: 1 MiB slices, so a download of a few MB crosses the high-water mark and the slice's end.
SMALL_SLICES = dict(ranges=4096, headroom=384 * KiB, hwm_margin=192 * KiB)
CONFIG = TcpConfig(msl=2.0)  # TIME-WAIT outlasts a lossy run's FIN retransmissions, as MSL intends
# dead_after is ten heartbeats: with 20% control loss, a false death (ten lost in a row) is a 1e-7 event.
TIMING = ControlTiming(heartbeat_interval=0.1, dead_after=1.0, initial_rto=0.05, min_rto=0.02)


def cluster(nodes=3, *, seed=0, timing=TIMING, dead_owner=DeadOwner.RST, max_claims=65536, **kwargs) -> ClusterSim:
    options = dict(timing=timing, dead_owner=dead_owner, max_claims=max_claims)
    sim = ClusterSim(nodes=nodes, seed=seed, config=CONFIG, cluster_options=options, **SMALL_SLICES, **kwargs)
    sim.serve(DownloadService(), PORT)
    return sim


def download(sim: ClusterSim, sizes: list[int], *, family: int = 4) -> Clients:
    clients = Clients()
    for i, size in enumerate(sizes):
        host = sim.add_client(f"10.1.{i // 250}.{i % 250 + 1}", clients)
        clients.start(host, sim.service, PORT, size, sim.now)
    return clients


def settle(sim: ClusterSim, clients: Clients, max_time: float = 300.0) -> None:
    """Run until every download ends, then past TIME-WAIT and a few heartbeats so releases land."""
    sim.run(clients.all_done, max_time=max_time)
    sim.run(max_time=sim.now + 4 * CONFIG.msl + 10 * TIMING.heartbeat_interval)


def check_invariants(sim: ClusterSim, clients: Clients) -> None:
    failed = {d.conn: (d.received, d.exact, d.reset, d.closed) for d in clients.downloads.values() if not d.succeeded}
    assert not failed, f"downloads failed: {failed}"
    assert sim.resets_to_clients == 0
    many = {conn: nodes for conn, nodes in sim.responders.items() if len(nodes) > 1}
    assert not many, f"more than one node answered a client: {many}"
    for node_id, node in sim.nodes.items():
        assert not node.host.connections, f"node {node_id} still has {node.host.connections}"
        assert not node.own and len(node.claims) == 0, f"node {node_id} still holds claims: {node.stats()}"


def total(sim: ClusterSim, counter: str) -> int:
    return sum(node.counters[counter] for node in sim.nodes.values())


def test_download_survives_route_moves_across_the_slice_end():
    sim = cluster(
        seed=1,
        mean_dwell=0.05,
        control_faults=LinkFaults(loss=0.05, reorder=0.1, delay=0.002),
        client_faults=LinkFaults(delay=0.005, bandwidth=4e6, queue_bytes=256 * KiB),
    )
    clients = download(sim, [6 * MiB])
    settle(sim, clients)
    check_invariants(sim, clients)
    assert sim.router.moves > 10
    assert total(sim, "forwarded_out") > 100
    assert total(sim, "claims_made") == 1 and total(sim, "claims_released") == 1
    assert total(sim, "forward_claimed") > 0  # after the slice end, only the claim could route it


def test_per_packet_flapping_during_handshakes():
    # Every packet may land anywhere: a client's SYN reaches several nodes, which all answer; the client's ACK
    # picks one, and the others must forward it there and forget their half-open copies without a RST.
    sim = cluster(seed=2, mean_dwell=None, flap=0.5, control_faults=LinkFaults(delay=0.001))
    clients = download(sim, [300 * KiB] * 8 + [3 * MiB] * 2)
    settle(sim, clients)
    check_invariants(sim, clients)
    assert total(sim, "forward_handshake_elsewhere") + total(sim, "forward_by_ack") > 0


def test_ipv6_service():
    sim = cluster(seed=3, service="2001:db8::10", mean_dwell=0.05)
    clients = Clients()
    for i in range(3):
        clients.start(sim.add_client(f"fd00:1::{i + 1}", clients), sim.service, PORT, 3 * MiB, sim.now)
    settle(sim, clients)
    check_invariants(sim, clients)
    assert total(sim, "claims_made") == 3


def test_claims_beyond_the_bound_wait_at_the_fence():
    # Each node may hold one claim; the other connections wait at their slice's end until it is released.
    sim = cluster(seed=4, max_claims=1, mean_dwell=0.05)
    clients = download(sim, [3 * MiB] * 4)
    settle(sim, clients)
    check_invariants(sim, clients)
    assert total(sim, "claims_waiting_for_room") > 0


def test_partition_between_peers_heals_by_resync():
    sim = cluster(seed=5, mean_dwell=0.05)
    clients = download(sim, [4 * MiB] * 3)
    sim.run(max_time=0.3)
    cut = LinkFaults(loss=1.0)
    for a, b in ((1, 2), (2, 1)):
        sim._link("control", a, b).set_faults(cut)
    sim.run(max_time=sim.now + 2.0)
    assert sim.nodes[1].peers[2].liveness is Liveness.DEAD
    for a, b in ((1, 2), (2, 1)):
        sim._link("control", a, b).set_faults(LinkFaults())
    settle(sim, clients)
    assert total(sim, "peer_revivals") >= 2
    # A client routed to a node that had dropped its owner's claims during the cut may have been reset by the
    # dead-owner policy: that is the documented cost of a partition. Whatever survived is exact, and the
    # tables converge once the partition heals.
    for d in clients.downloads.values():
        assert d.exact
    for node in sim.nodes.values():
        assert not node.own and len(node.claims) == 0


@pytest.mark.parametrize("policy", list(DeadOwner))
def test_dead_owner_policy_rst_fails_fast_and_drop_waits(policy):
    sim = cluster(seed=6, mean_dwell=None, dead_owner=policy)
    clients = download(sim, [50 * MiB])
    (d,) = clients.downloads.values()
    sim.run(lambda: d.received > 1 * MiB, max_time=60)
    (owner,) = [i for i, n in sim.nodes.items() if n.host.connections]
    sim.kill(owner)
    d.conn.send(b"are you there?")  # a receiver notices nothing until it next speaks
    sim.run(clients.all_done, max_time=sim.now + 5.0)
    others = [n for i, n in sim.nodes.items() if i != owner]
    if policy is DeadOwner.RST:
        assert d.reset and d.closed is not None, "the client should have been reset on the dead owner's behalf"
        assert sum(n.counters["dead_owner_reset"] for n in others) >= 1
    else:
        assert not d.done, "with drop the client keeps retrying"
        assert sum(n.counters["dead_owner_dropped"] for n in others) >= 1


def test_restarted_owner_resets_what_it_forgot_and_peers_drop_its_claims():
    sim = cluster(seed=7, mean_dwell=0.05)
    clients = download(sim, [40 * MiB])
    sim.run(lambda: sum(len(n.claims) for n in sim.nodes.values()) == 2, max_time=60)
    (owner,) = [i for i, n in sim.nodes.items() if n.own]
    sim.kill(owner)
    sim.restart(owner)
    sim.run(clients.all_done, max_time=sim.now + 10)
    (d,) = clients.downloads.values()
    assert d.reset  # the owner's new incarnation knows nothing of it: TCP's answer is a RST, from the owner
    sim.run(max_time=sim.now + 1.0)
    assert all(len(n.claims) == 0 for n in sim.nodes.values())
    assert sum(n.counters["peer_restarts"] for n in sim.nodes.values()) >= 2


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32),
    nodes=st.integers(3, 5),
    mean_dwell=st.sampled_from([None, 0.01, 0.05, 0.3]),
    flap=st.sampled_from([0.0, 0.0, 0.05, 0.5]),
    control=st.builds(
        LinkFaults,
        loss=st.sampled_from([0.0, 0.05, 0.2]),
        duplicate=st.sampled_from([0.0, 0.05]),
        reorder=st.sampled_from([0.0, 0.1, 0.3]),
        delay=st.sampled_from([0.0005, 0.005, 0.02]),
        jitter=st.sampled_from([0.0, 0.01]),
    ),
    client=st.builds(
        LinkFaults,
        loss=st.sampled_from([0.0, 0.01]),
        reorder=st.sampled_from([0.0, 0.05]),
        delay=st.sampled_from([0.001, 0.01]),
        jitter=st.sampled_from([0.0, 0.005]),
    ),
    sizes=st.lists(st.sampled_from([1, 20 * KiB, 700 * KiB, 2500 * KiB]), min_size=1, max_size=5),
)
def test_cluster_property(seed, nodes, mean_dwell, flap, control, client, sizes):
    sim = cluster(nodes, seed=seed, mean_dwell=mean_dwell, flap=flap, control_faults=control, client_faults=client)
    clients = download(sim, sizes)
    settle(sim, clients, max_time=600)
    check_invariants(sim, clients)
