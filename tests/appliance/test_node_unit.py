"""AnycastNode's control plane driven by hand, with no simulator: nodes built as appliance/sim.py builds them, every
datagram moved, dropped or redirected explicitly, and a manual clock. Each test proves one rule of
docs/protocol.md, "Control messages"."""

import ipaddress
from collections.abc import Callable

import pytest

from appliance import control
from appliance.control import Ack, Batch, Heartbeat
from appliance.node import AnycastNode, ClusterConfig
from appliance.peers import ControlTiming, Liveness
from stack.host import Host
from stack.tcp.events import DataReceived
from stack.wire import ACK, SYN, TcpSegment, build_tcp_packet, parse_ip, parse_tcp
from tunnel import vnet
from tunnel.encap import HEADER_LEN, Sealer
from tunnel.keys import ClusterKeys

KEYS = ClusterKeys(send_id=1, keys={1: bytes(32)})
UNDERLAY = {i: (f"10.255.0.{i}", 6080) for i in (1, 2, 3)}
BY_UNDERLAY = {address: i for i, address in UNDERLAY.items()}
SERVICE = "192.0.2.10"
PORT = 80
RANGES = 4
SLICE = 2**32 // RANGES
TIMING = ControlTiming(heartbeat_interval=0.1, dead_after=0.6, initial_rto=0.05, min_rto=0.02, max_rto=1.0)
# ISNs in the first ISN_SPAN bytes of a node's slice and the claim mark just past them: a connection is claimed as
# soon as it has sent ISN_SPAN bytes, so a handshake and one segment are all it takes to give a node a claim.
ISN_SPAN = 1000
HEADROOM = SLICE - ISN_SPAN

Sent = tuple[int, int, bytes]  # (from node, to node, datagram)


def make_node(node_id: int, *, nodes: int, incarnation: int = 1, now: float = 0.0) -> AnycastNode:
    peers = {i: address for i, address in UNDERLAY.items() if i != node_id and i <= nodes}
    node = AnycastNode(
        [SERVICE],
        cluster=ClusterConfig(
            node_id=node_id, ranges=RANGES, headroom=HEADROOM, hwm_margin=HEADROOM - 1, timing=TIMING
        ),
        peers=peers,
        keys=KEYS,
        incarnation=incarnation,
        secret=bytes([node_id]) * 32,
        now=now,
    )
    node.listen(PORT)
    return node


def message(datagram: bytes) -> Batch | Ack | Heartbeat | None:
    """The control message a datagram carries (None for data): for the tests to look at, not for nodes to trust."""
    return control.decode(datagram[HEADER_LEN:]) if datagram[0] & 0x20 else None


def is_batch(sent: Sent) -> bool:
    return type(message(sent[2])) is Batch


def drain(node: AnycastNode) -> None:
    while node.next_event() is not None:
        pass


class Cluster:
    """Nodes and the datagrams between them. ``collect`` gathers what every node has to send now; a test delivers,
    drops or redirects each one itself, or lets ``settle`` and ``run_until`` deliver what ``only`` lets through."""

    def __init__(self, count: int) -> None:
        self.now = 0.0
        self.count = count
        self.nodes = {i: make_node(i, nodes=count) for i in range(1, count + 1)}

    def restart(self, node_id: int, incarnation: int) -> AnycastNode:
        self.nodes[node_id] = make_node(node_id, nodes=self.count, incarnation=incarnation, now=self.now)
        return self.nodes[node_id]

    def collect(self, *, timers: bool = True) -> list[Sent]:
        out = []
        for src, node in self.nodes.items():
            if timers and (deadline := node.get_timer()) is not None and deadline <= self.now:
                node.handle_timer(self.now)
            node.packets_to_send(self.now)  # to clients: none of these tests delivers them
            drain(node)
            out += [(src, BY_UNDERLAY[address], datagram) for address, datagram in node.datagrams_to_send(self.now)]
        return out

    def deliver(self, sent: list[Sent], only: Callable[[Sent], bool] | None = None) -> None:
        for item in sent:
            if only is None or only(item):
                self.nodes[item[1]].receive_datagram(item[2], self.now)

    def settle(self, only: Callable[[Sent], bool] | None = None) -> None:
        """Deliver what is due now until nothing more is sent."""
        for _ in range(100):
            sent = self.collect()
            if not sent:
                return
            self.deliver(sent, only)
        raise AssertionError("the control plane never went quiet")

    def run_until(self, done: Callable[[], bool], only: Callable[[Sent], bool] | None = None, limit=10.0) -> None:
        """Jump from deadline to deadline, settling at each, until ``done()``."""
        self.settle(only)
        while not done():
            deadlines = [t for node in self.nodes.values() if (t := node.get_timer()) is not None]
            assert deadlines and self.now < limit, "ran out of time"
            self.now = max(self.now, min(deadlines))
            self.settle(only)


def handshake(cluster: Cluster, node_id: int, client_port: int) -> tuple[bytes, int, bytes, int]:
    """A client connects to ``node_id``, which sends it ISN_SPAN bytes and so claims the connection, queueing the
    claim to its live peers. Returns the claim's 4-tuple, client side first."""
    client_addr, now = "198.51.100.7", cluster.now
    client = Host([client_addr], secret=bytes(32))
    client.connect(SERVICE, PORT, now, local_port=client_port)
    node = cluster.nodes[node_id]
    claims_before = node.stats()["claims_own"]
    for packet in client.packets_to_send(now):  # SYN
        node.receive_packet(packet, now)
    for packet in node.packets_to_send(now):  # SYN-ACK
        client.receive_packet(packet, now)
    for packet in client.packets_to_send(now):  # ACK
        node.receive_packet(packet, now)
    while (item := node.next_event()) is not None:
        item[0].send(bytes(ISN_SPAN))
    node.packets_to_send(now)  # the segment that reaches the claim mark; the client need not see it
    drain(node)
    assert node.stats()["claims_own"] == claims_before + 1
    return (ipaddress.ip_address(client_addr).packed, client_port, ipaddress.ip_address(SERVICE).packed, PORT)


# -- (a) every message names its receiver -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Batch, Ack, Heartbeat])
def test_a_message_for_another_node_redirected_to_us_is_counted_and_ignored(kind):
    """docs/protocol.md: the tunnel authenticates the sender, not the receiver. A copy of node 1's datagram for node
    2, redirected to node 3, opens there, and must change nothing."""
    cluster = Cluster(3)
    sent = cluster.collect()  # every node's first batch (its empty snapshot) and first heartbeat, to every peer
    node1, node3 = cluster.nodes[1], cluster.nodes[3]
    if kind is Ack:
        cluster.deliver(sent, only=lambda s: s[:2] == (2, 1) and is_batch(s))
        sent = cluster.collect(timers=False)  # node 1's Ack(receiver=2, epoch 1, seq 1)
    (for_node2,) = [s for s in sent if s[:2] == (1, 2) and type(message(s[2])) is kind]
    assert message(for_node2[2]).receiver == 2
    cluster.deliver(sent, only=lambda s: s[0] == 1 and s[1] == 3 and not is_batch(s))  # node 3 hears node 1
    heartbeats_before = node3.counters["heartbeats_received"]

    node3.receive_datagram(for_node2[2], cluster.now)

    assert node3.counters["control_not_for_us"] == 1
    assert node3.stats()["tunnel_drops"] == {}  # it did open: only the receiver field stops it
    assert node3.counters["heartbeats_received"] == heartbeats_before
    assert node3.peers[1].rx_epoch is None  # a batch was not taken as node 1's stream to node 3
    assert not node3.peers[1].idle  # an ack did not acknowledge node 3's own batch 1 to node 1 (same epoch, seq)
    assert node3.datagrams_to_send(cluster.now) == []  # and nothing is answered
    assert node1.counters["control_not_for_us"] == 0


def test_a_message_resealed_for_the_wrong_node_is_refused():
    """The same rule for a fresh datagram (a sender's bug rather than an attacker's copy)."""
    cluster = Cluster(3)
    cluster.settle()
    node1, node3 = cluster.nodes[1], cluster.nodes[3]
    payloads = [
        control.encode_batch(Batch(2, 2, 1, ((control.Op.SNAPSHOT_BEGIN, None), (control.Op.SNAPSHOT_END, None)))),
        control.encode_ack(Ack(2, 1, 1)),
        control.encode_heartbeat(Heartbeat(2, ((3, 5, 0x1234),))),
    ]
    for payload in payloads:
        node3.receive_datagram(node1.sealer.control(payload), cluster.now)
    assert node3.counters["control_not_for_us"] == 3 and node3.counters["control_malformed"] == 0
    assert node3.peers[1].rx_epoch == 1  # not epoch 2: the batch was not applied
    assert node3.datagrams_to_send(cluster.now) == []


# -- (b) a restarted peer -----------------------------------------------------------------------------------------


def test_a_restarted_peer_loses_its_claims_everywhere_and_gets_a_new_epoch():
    cluster = Cluster(3)
    cluster.settle()
    theirs = handshake(cluster, 2, client_port=40000)
    ours = handshake(cluster, 1, client_port=40001)
    cluster.settle()
    node1, node3 = cluster.nodes[1], cluster.nodes[3]
    assert node1.claims.owner(theirs) == 2 and node3.claims.owner(theirs) == 2
    epochs = {i: cluster.nodes[i].peers[2].tx_epoch for i in (1, 3)}

    node2 = cluster.restart(2, incarnation=2)  # empty, and it remembers none of what it held
    first = cluster.collect()
    cluster.deliver(first, only=lambda s: s[0] == 2 and not is_batch(s))  # its heartbeats, before its snapshot

    for survivor in (node1, node3):
        assert survivor.counters["peer_restarts"] == 1
        assert survivor.claims.owner(theirs) is None  # what it owned died with it
        assert survivor.peers[2].incarnation == 2
        assert survivor.peers[2].tx_epoch == epochs[survivor.node_id] + 1  # our stream to it starts over
    cluster.deliver(first, only=lambda s: s[0] != 2 or is_batch(s))
    cluster.settle()
    assert node1.peers[2].idle and node3.peers[2].idle  # the new incarnation acknowledged both snapshots
    assert node2.claims.owner(ours) == 1  # node 1's snapshot brought its claim back
    assert node1.counters["peer_restarts"] == node3.counters["peer_restarts"] == 1


def test_the_old_incarnations_late_datagrams_are_dropped_after_a_restart():
    cluster = Cluster(2)
    late = [s for s in cluster.collect() if s[0] == 2]  # sealed by incarnation 1, still in the network
    cluster.restart(2, incarnation=2)
    cluster.settle()
    node1 = cluster.nodes[1]
    cluster.deliver(late)
    assert node1.stats()["tunnel_drops"] == {"stale_incarnation": len(late)}
    assert node1.counters["peer_restarts"] == 0  # it never heard incarnation 1 before 2


# -- (c) heartbeat digests ----------------------------------------------------------------------------------------


def test_two_heartbeat_disagreements_while_idle_resend_everything_in_a_new_epoch():
    cluster = Cluster(2)
    cluster.settle()
    key = handshake(cluster, 1, client_port=40000)
    cluster.settle()
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    assert node2.claims.owner(key) == 1 and node1.peers[2].idle
    node2.claims.release(1, key)  # behind its back: a lost release, a bug, a bit flip

    heard = node1.counters["heartbeats_received"]
    cluster.run_until(lambda: node1.counters["heartbeats_received"] == heard + 1)
    assert node1.counters["control_resyncs"] == 0  # once may be a heartbeat that crossed a batch
    cluster.run_until(lambda: node1.counters["heartbeats_received"] == heard + 2)
    assert node1.counters["control_resyncs"] == 1 and node1.peers[2].tx_epoch == 2
    cluster.settle()
    assert node2.claims.owner(key) == 1


def test_disagreement_while_our_batches_are_in_flight_does_not_count():
    """A heartbeat can cross a batch, so only an idle stream's disagreement means the peer lost track."""
    cluster = Cluster(2)
    cluster.settle()
    key = handshake(cluster, 1, client_port=40000)
    cluster.settle()
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    node2.claims.release(1, key)
    handshake(cluster, 1, client_port=40001)  # a second claim, whose batches are lost for a while
    heard = node1.counters["heartbeats_received"]
    cluster.run_until(
        lambda: node1.counters["heartbeats_received"] == heard + 4, only=lambda s: not (s[0] == 1 and is_batch(s))
    )
    assert node1.counters["control_resyncs"] == 0 and not node1.peers[2].idle
    cluster.run_until(lambda: node1.counters["control_resyncs"] == 1)  # once it is idle, the rule applies
    cluster.settle()
    assert node2.claims.owner(key) == 1


def test_a_heartbeat_that_agrees_resets_the_count_of_disagreements():
    cluster = Cluster(2)
    cluster.settle()
    key = handshake(cluster, 1, client_port=40000)
    cluster.settle()
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    heard = node1.counters["heartbeats_received"]
    node2.claims.release(1, key)
    cluster.run_until(lambda: node1.counters["heartbeats_received"] == heard + 1)
    node2.claims.claim(1, key)  # it agrees again before the second heartbeat
    cluster.run_until(lambda: node1.counters["heartbeats_received"] == heard + 2)
    node2.claims.release(1, key)
    cluster.run_until(lambda: node1.counters["heartbeats_received"] == heard + 3)
    assert node1.counters["control_resyncs"] == 0 and node1.peers[2].tx_epoch == 1


# -- (d) Ack(seq=0): "I have no state for this epoch" -------------------------------------------------------------


def test_no_state_answer_is_ignored_while_our_first_batch_is_unacknowledged():
    cluster = Cluster(2)
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    cluster.deliver(cluster.collect(), only=lambda s: not (s[0] == 1 and is_batch(s)))  # node 1's batch 1 is lost
    key = handshake(cluster, 1, client_port=40000)
    cluster.deliver(cluster.collect(timers=False))  # batch 2 (the claim) overtakes it
    answers = cluster.collect(timers=False)
    assert [message(s[2]) for s in answers] == [Ack(1, 1, 0)]  # node 2 holds nothing of epoch 1

    cluster.deliver(answers)

    assert node1.counters["control_resyncs"] == 0 and node1.peers[2].tx_epoch == 1  # batch 1 is on its way
    cluster.run_until(lambda: node1.peers[2].idle)  # the retransmission brings batches 1 and 2
    assert node1.peers[2].tx_epoch == 1 and node2.claims.owner(key) == 1


def test_no_state_answer_after_our_first_batch_was_acknowledged_resends_everything():
    """Node 2 declares node 1 dead while node 1 still hears node 2 (a one-way outage), so node 2 forgets node 1's
    stream. Node 1's next batch then meets no state, and only a new epoch can repair that."""
    cluster = Cluster(2)
    cluster.settle()  # both epochs open, both first batches acknowledged
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    cluster.run_until(lambda: node2.peers[1].liveness is Liveness.DEAD, only=lambda s: s[0] == 2)
    assert node1.peers[2].liveness is Liveness.ALIVE and node1.peers[2].idle
    key = handshake(cluster, 1, client_port=40000)
    cluster.deliver(cluster.collect(timers=False))  # batch 2 (the claim): node 2 revives node 1, without its stream
    answers = cluster.collect(timers=False)
    assert Ack(1, 1, 0) in [message(s[2]) for s in answers]
    assert node2.counters["peer_revivals"] == 1

    cluster.deliver(answers)

    assert node1.counters["control_resyncs"] == 1 and node1.peers[2].tx_epoch == 2
    cluster.settle()
    assert node2.claims.owner(key) == 1 and node1.peers[2].idle


# -- (e) configuration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (dict(ranges=1), r"a cluster needs ranges >= 2"),
        (dict(ranges=3), r"ranges=3 must be a power of two"),
        (dict(hwm_margin=256 * 2**20), r"hwm_margin=268435456 must be positive and below headroom=268435456"),
        (dict(hwm_margin=0), r"hwm_margin=0 must be positive"),
        (dict(node_id=5), r"node id 5 is outside 1\.\.4"),
        (dict(max_claims=0), r"max_claims=0 must be at least 1"),
        (dict(underlay_mtu=500), r"underlay_mtu=500 is out of range"),
    ],
)
def test_cluster_config_refuses_nonsense_with_a_clear_message(options, error):
    with pytest.raises(ValueError, match=error):
        ClusterConfig(**{"node_id": 1, "ranges": RANGES, **options})


@pytest.mark.parametrize(
    ("peers", "error"),
    [
        ({1: UNDERLAY[1], 2: UNDERLAY[2]}, r"node 1 lists itself among its peers: remove it"),
        ({2: UNDERLAY[2], 5: ("10.255.0.5", 6080)}, r"peer id 5 is outside 1\.\.4: raise ranges or renumber"),
    ],
)
def test_node_refuses_a_peer_list_with_itself_or_an_impossible_id(peers, error):
    with pytest.raises(ValueError, match=error):
        AnycastNode(
            [SERVICE],
            cluster=ClusterConfig(node_id=1, ranges=RANGES),
            peers=peers,
            keys=KEYS,
            incarnation=1,
            secret=bytes(32),
            now=0.0,
        )


# -- (f) forwarding is one hop ------------------------------------------------------------------------------------


def test_a_forwarded_packet_that_has_already_been_forwarded_is_dropped_and_counted():
    cluster = Cluster(2)
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    client = Host(["198.51.100.7"], secret=bytes(32))
    client.connect(SERVICE, PORT, cluster.now, local_port=40000)
    (syn,) = client.packets_to_send(cluster.now)

    node1.receive_datagram(node2.sealer.data(syn, hops=2), cluster.now)
    assert node1.counters["forwarded_in_too_many_hops"] == 1 and node1.counters["forwarded_in"] == 0
    assert node1.packets_to_send(cluster.now) == [] and not node1.host.connections

    node1.receive_datagram(node2.sealer.data(syn, hops=1), cluster.now)  # the same SYN, one hop: accepted
    assert node1.counters["forwarded_in"] == 1 and len(node1.packets_to_send(cluster.now)) == 1


@pytest.mark.parametrize("size", [900, 20_000])
def test_a_super_segment_for_a_peer_is_cut_into_complete_segments_that_fit(size):
    """With TUN offloads the kernel hands over up to 64 KB at once, its checksum left partial (NEEDS_CSUM); a
    non-owner cuts it into segments that fit a datagram, each with its checksum, and the owner takes them all."""
    cluster = Cluster(2)
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    now = cluster.now
    client = Host(["198.51.100.7"], secret=bytes(32))
    client.tso_limit = 65_000
    conn = client.connect(SERVICE, PORT, now, local_port=40001)
    for packet in client.packets_to_send(now):  # the handshake with the owner, node 2
        node2.receive_packet(packet, now)
    for packet in node2.packets_to_send(now):
        client.receive_packet(packet, now)
    client.packets_to_send(now)  # the ACK: it goes astray, the data below completes the handshake as well
    conn.rx.buffer_size = conn.tx.cc.cwnd = 1 << 20
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    conn.send(data)
    packets = client.packets_to_send(now)
    assert len(packets) == 1 and (len(packets[0]) > node1.host.mtu) == (size > 1460)
    sent = len(packets[0]) - 52  # IPv4 and TCP with timestamps; Nagle holds back a short tail

    # The route moved: node 1 gets it whole, its checksum partial, as the kernel hands it over.
    ip = parse_ip(bytes(packets[0]))
    seg = parse_tcp(ip.payload, ip.src, ip.dst, verify_checksum=False)
    partial = build_tcp_packet(seg, ip.src, ip.dst, partial_checksum=True)
    node1.receive_packet(partial, now, verified=vnet.NEEDS_CSUM)
    datagrams = [d for _, d in node1.datagrams_to_send(now) if message(d) is None]  # data, not heartbeats
    # Pieces of the MTU less 52 bytes of headers (IPv4, and TCP with timestamps).
    assert len(datagrams) == -(-sent // (node1.host.mtu - 52)) and node1.counters["forwarded_cut"] == (size > 1460)
    assert all(len(d) <= node1.cluster.underlay_mtu - 28 for d in datagrams)
    for datagram in datagrams:
        node2.receive_datagram(datagram, now)
    assert node2.host.drops["bad_tcp"] == 0
    received = b""
    while (item := node2.next_event()) is not None:
        if type(item[1]) is DataReceived:
            received += item[1].data
    assert received == data[:sent]


def test_a_claimed_connections_segment_is_forwarded_without_the_full_parse():
    """The non-owner's fast path: a claimed 4-tuple's segment goes to its owner straight from the raw bytes,
    counted as the classifier counts it; what it does not cover (here: a SYN) still takes the full path."""
    cluster = Cluster(2)
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    client, client_port, service, port = handshake(cluster, 1, 40002)
    cluster.settle()
    assert node2.claims.owner((client, client_port, service, port)) == 1
    conn = node1.host.connections[(service, port, client, client_port)]
    ack = build_tcp_packet(TcpSegment(client_port, port, conn.rx.rcv_nxt, conn.tx.snd_nxt, ACK, 500), client, service)

    full_path = node2.host.receive_packet
    node2.host.receive_packet = lambda *args: pytest.fail("the full path was taken")
    node2.receive_packet(ack, cluster.now)
    node2.host.receive_packet = full_path
    (datagram,) = [d for _, d in node2.datagrams_to_send(cluster.now) if message(d) is None]
    assert node2.counters["forward_claimed"] == 1 and node2.host.packets_in == 1

    segments_before = conn.segments_received
    node1.receive_datagram(datagram, cluster.now)
    assert conn.segments_received == segments_before + 1 and node1.host.drops["bad_tcp"] == 0

    syn = build_tcp_packet(TcpSegment(client_port + 1, port, 7, 0, SYN, 500), client, service)
    node2.receive_packet(syn, cluster.now)  # a new connection: node 2's own, through its listener
    assert [c.state.name for c in node2.host.connections.values()] == ["SYN_RECEIVED"]


# -- (g) the tunnel's drops ---------------------------------------------------------------------------------------


def test_tunnel_drops_reach_stats_and_do_not_count_as_hearing_from_the_peer():
    cluster = Cluster(2)
    node1 = cluster.nodes[1]
    (genuine, *_) = [s[2] for s in cluster.collect() if s[:2] == (2, 1)]
    forged = genuine[:-1] + bytes([genuine[-1] ^ 1])
    stranger = Sealer(4, 1, KEYS).control(control.encode_heartbeat(Heartbeat(1, ())))  # node 4 is not a peer

    for datagram in (forged, stranger, genuine[: HEADER_LEN - 1]):
        node1.receive_datagram(datagram, cluster.now)
    assert node1.stats()["tunnel_drops"] == {"bad_tag": 1, "unknown_sender": 1, "truncated": 1}
    assert node1.peers[2].liveness is Liveness.UNKNOWN and node1.peers[2].incarnation is None

    node1.receive_datagram(genuine, cluster.now)
    node1.receive_datagram(genuine, cluster.now)
    assert node1.stats()["tunnel_drops"]["replay"] == 1
    assert node1.peers[2].liveness is Liveness.ALIVE


def test_an_authentic_but_malformed_control_message_is_counted_and_dropped():
    cluster = Cluster(2)
    cluster.settle()
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    node1.receive_datagram(node2.sealer.control(b"\x09\x00\x00\x00\x00\x01\x00\x00"), cluster.now)
    assert node1.counters["control_malformed"] == 1
    assert node1.datagrams_to_send(cluster.now) == []


# -- (f) reconfiguration and shutdown -----------------------------------------------------------------------------


def test_a_removed_peer_is_forgotten_and_an_added_one_gets_our_claims_as_its_snapshot():
    cluster = Cluster(3)
    cluster.settle()
    theirs = handshake(cluster, 2, client_port=40000)
    ours = handshake(cluster, 1, client_port=40001)
    cluster.settle()
    node1 = cluster.nodes[1]
    assert node1.claims.owner(theirs) == 2
    new_keys = ClusterKeys(send_id=2, keys={1: bytes(32), 2: bytes(range(32))})

    node1.reconfigure({3: UNDERLAY[3]}, new_keys, cluster.now)  # node 2 leaves the plan

    assert set(node1.peers) == {3} and node1.opener.senders == {3}
    assert node1.claims.owner(theirs) is None and node1.counters["peers_removed"] == 1
    assert node1.sealer.keys is new_keys
    node1.reconfigure({2: UNDERLAY[2], 3: UNDERLAY[3]}, KEYS, cluster.now)  # and comes back
    assert node1.peers[2].liveness is Liveness.UNKNOWN and node1.counters["peers_added"] == 1
    cluster.settle()
    assert cluster.nodes[2].claims.owner(ours) == 1  # the new epoch's snapshot carried our claim
    with pytest.raises(ValueError, match="lists itself"):
        node1.reconfigure({1: UNDERLAY[1]}, KEYS, cluster.now)


def test_release_all_withdraws_every_claim_and_settles_once_peers_acknowledge():
    cluster = Cluster(3)
    cluster.settle()
    ours = handshake(cluster, 1, client_port=40001)
    cluster.settle()
    node1 = cluster.nodes[1]
    assert node1.control_settled and cluster.nodes[2].claims.owner(ours) == 1

    node1.release_all(cluster.now)

    assert not node1.own and not node1.control_settled  # the releases wait for acknowledgment
    cluster.settle()
    assert node1.control_settled
    assert all(cluster.nodes[i].claims.owner(ours) is None for i in (2, 3))
    assert node1.counters["claims_released"] == 1
