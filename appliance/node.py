"""The anycast node, sans-I/O: a Host whose strangers are forwarded to their owners instead of reset.

Packets from the TUN device go in through ``receive_packet``, datagrams from peers through ``receive_datagram``;
out come IP packets for the device (``packets_to_send``) and datagrams for peers (``datagrams_to_send``). The
node offers the Host's driving interface (receive_packet, next_event, packets_to_send, get_timer, handle_timer),
so the asyncio runtime and the simulators drive it exactly as they drive a plain Host.

What the node adds to TCP (DESIGN.md §2, docs/anycast.md):
- ISNs in its home range (``HomeRangeIsn``), so a client's ACK names the node whose bytes it acknowledges;
- the classifier: a segment that matches no connection is forwarded to its owner, and only the owner resets;
- claims: a connection about to leave the home range is announced to every peer, and fenced at the slice's end
  until every live peer has acknowledged, so no client can acknowledge a byte that points elsewhere unannounced.
"""

import dataclasses
import enum
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from stack.host import Host, reset_unmatched
from stack.seq import SEQ_MOD
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.events import Event, SendWatermark
from stack.tcp.state import State
from stack.tcp.syncookie import MIN_SPAN as COOKIE_MIN_SPAN
from stack.tcp.syncookie import SynCookies
from stack.wire import ACK, SYN, IcmpMessage, IpPacket, QuotedTcp, TcpSegment, WireError
from stack.wire.tso import fit
from tunnel.encap import Kind, Opener, Sealer, overhead
from tunnel.keys import ClusterKeys
from tunnel.vnet import NEEDS_CSUM

from . import control
from .claims import DEFAULT_MAX_CLAIMS, ClaimSet, ClaimsTable, FourTuple
from .control import Ack, Batch, Heartbeat, Op
from .peers import ControlTiming, Liveness, Peer
from .ranges import DEFAULT_HEADROOM, HomeRangeIsn, MiB, RangePlan

DEFAULT_HWM_MARGIN = 64 * MiB
_log = structlog.get_logger("appliance.node")  # peer state changes and claims at info: rare by design
CLAIM_RTT_SAMPLES = 4096


class DeadOwner(enum.Enum):
    """What to do with a stranger's segment whose owner has been declared dead."""

    RST = "rst"  # reset it on the owner's behalf: the client fails fast instead of retrying for minutes
    DROP = "drop"  # let the client retransmit: it survives if the owner comes back in time


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    node_id: int
    ranges: int
    headroom: int = DEFAULT_HEADROOM
    hwm_margin: int = DEFAULT_HWM_MARGIN  # claim a connection this many bytes before its slice ends
    dead_owner: DeadOwner = DeadOwner.RST
    max_claims: int = DEFAULT_MAX_CLAIMS  # claims one node may hold of its own; the same bound per owner at peers
    underlay_mtu: int = 1500
    underlay_ipv6: bool = False
    timing: ControlTiming = dataclasses.field(default_factory=ControlTiming)

    def __post_init__(self) -> None:
        _ = self.plan  # RangePlan validates ranges, node id and headroom, each with its own message
        if self.ranges < 2:
            raise ValueError("a cluster needs ranges >= 2 (one slice per node); a single node needs no cluster")
        if not 0 < self.hwm_margin < self.headroom:
            # A connection is born at least ``headroom`` before its slice's end; a margin as large would put the
            # high-water mark behind some connections' first byte, and they would never be claimed.
            raise ValueError(
                f"hwm_margin={self.hwm_margin} must be positive and below headroom={self.headroom}: "
                "it is how far before the slice's end a connection is claimed, so lower it or raise headroom"
            )
        if self.max_claims < 1:
            raise ValueError(f"max_claims={self.max_claims} must be at least 1")
        if not 576 <= self.underlay_mtu <= 65535:
            raise ValueError(f"underlay_mtu={self.underlay_mtu} is out of range: use 576 to 65535 (1500 for Ethernet)")

    @property
    def plan(self) -> RangePlan:
        return RangePlan(self.ranges, self.node_id, self.headroom)


class _OwnClaim:
    __slots__ = ("conn", "started", "waiting")

    def __init__(self, conn: Connection, waiting: set[int], started: float) -> None:
        self.conn = conn
        self.waiting = waiting  # live peers that have not yet acknowledged it
        self.started = started


def _check_peer_ids(cluster: ClusterConfig, peers: Mapping[int, tuple]) -> None:
    if cluster.node_id in peers:
        raise ValueError(f"node {cluster.node_id} lists itself among its peers: remove it from the peer list")
    for peer_id in peers:
        if not 1 <= peer_id <= cluster.ranges:
            raise ValueError(f"peer id {peer_id} is outside 1..{cluster.ranges}: raise ranges or renumber")


def client_tuple(conn: Connection) -> FourTuple:
    return (conn.remote_addr, conn.remote_port, conn.local_addr, conn.local_port)


class AnycastNode:
    def __init__(
        self,
        addresses: Iterable[str | bytes],
        *,
        cluster: ClusterConfig,
        peers: Mapping[int, tuple],
        keys: ClusterKeys,
        incarnation: int,
        secret: bytes,
        now: float,
        mtu: int = 1500,
        config: TcpConfig | None = None,
        ttl: int = 64,
    ) -> None:
        _check_peer_ids(cluster, peers)
        self.cluster = cluster
        self.plan = plan = cluster.plan
        self.node_id = cluster.node_id
        # The MSS we advertise leaves room for the encapsulation, so a forwarded segment is never fragmented.
        host_mtu = min(mtu, cluster.underlay_mtu - overhead(cluster.underlay_ipv6))
        self.host = Host(
            addresses,
            secret=secret,
            mtu=host_mtu,
            config=config,
            isn_source=HomeRangeIsn(plan, secret),
            # SYN cookies in the home range too: a cookie's ACK that lands on another node is forwarded here. (A
            # range too small to hold a cookie's MAC, only ever configured in tests, gets none.)
            syn_cookies=SynCookies(secret, start=plan.slice_start, span=plan.isn_span)
            if plan.isn_span >= COOKIE_MIN_SPAN
            else False,
            unmatched=self._unmatched,
            unmatched_icmp=self._unmatched_icmp,
            foreign_ack=self._foreign_ack,
            on_open=self._on_open,
            on_close=self._on_close,
            ttl=ttl,
        )
        self.sealer = Sealer(cluster.node_id, incarnation, keys)
        self.opener = Opener(keys, peers)
        self.incarnation = incarnation
        self.peers: dict[int, Peer] = {pid: Peer(pid, addr, cluster.timing, now) for pid, addr in peers.items()}
        self.claims = ClaimsTable(cluster.max_claims)  # what our peers own
        # The claims of peers declared dead, kept only so their clients meet the dead-owner policy rather than
        # whichever node their ACK now points at; gone when the owner comes back or restarts.
        self._orphans: dict[int, set[FourTuple]] = {}
        self.own: dict[FourTuple, _OwnClaim] = {}
        self._own_set = ClaimSet()
        self._claim_queue: deque[Connection] = deque()  # crossed the mark while ``max_claims`` were held
        self._fence = plan.slice_end
        self._mark = (plan.slice_end - cluster.hwm_margin) % SEQ_MOD
        self._datagrams: list[tuple[tuple, bytes]] = []
        self._now = now  # the time of the call being handled (claims are timed from it)
        self._raw = b""  # the packet being classified, intact, for forwarding
        self._raw_unfinished = False  # it must be cut into segments before it is forwarded (receive_packet)
        self._raw_partial = False  # its checksum is the pseudo-header sum alone (NEEDS_CSUM)
        self._forwarded = False  # whether it arrived forwarded (then it is never forwarded again)
        self.counters: Counter[str] = Counter()
        self.claim_rtts: deque[float] = deque(maxlen=CLAIM_RTT_SAMPLES)
        for peer in self.peers.values():
            peer.open_epoch(())

    # ---------------------------------------------------------------------------------------------------------
    # The Host's driving interface

    @property
    def addresses(self) -> frozenset[bytes]:
        return self.host.addresses

    def receive_packet(self, data: bytes, now: float, verified: int = 0) -> None:
        """One packet from the TUN; ``verified`` is the device's offload flags for it (tunnel/vnet.py)."""
        self._now = now
        self._raw = data
        # What the kernel handed over as to an offloading device (a super-segment, or NEEDS_CSUM: a checksum
        # left to the device) is cut into ordinary segments before it is forwarded: a datagram must fit in the
        # underlay, and the owner verifies every checksum.
        self._raw_partial = bool(verified & NEEDS_CSUM)
        self._raw_unfinished = self._raw_partial or len(data) > self.host.mtu
        if not self._forward_claimed_fast(data):
            self.host.receive_packet(data, now, bool(verified))

    def _forward_claimed_fast(self, data: bytes) -> bool:
        """The bulk of a non-owner's work, without parsing: an IPv4 TCP segment (no IP options, not a fragment) of
        a 4-tuple a live peer has claimed, that no connection here holds and that is not a bare SYN, goes to that
        peer as the classifier would send it (docs/anycast.md, case 2). Anything else, or anything odd, takes the
        full path. The owner parses and verifies what it gets, so nothing is trusted here that is not checked
        there."""
        if len(data) < 40 or data[0] != 0x45 or data[9] != 6 or data[6] & 0x3F or data[7]:
            return False
        if int.from_bytes(data[2:4], "big") != len(data) or data[33] & (SYN | ACK) == SYN:
            return False
        host, local = self.host, data[16:20]
        if local not in host.addresses:
            return False
        remote, remote_port, local_port = (
            data[12:16],
            int.from_bytes(data[20:22], "big"),
            int.from_bytes(data[22:24], "big"),
        )
        if (local, local_port, remote, remote_port) in host.connections:
            return False
        owner = self.claims.owner((remote, remote_port, local, local_port))
        peer = self.peers.get(owner) if owner is not None else None
        if peer is None or not peer.live:
            return False
        host.packets_in += 1
        self._forward(peer, "forward_claimed")
        return True

    def next_event(self) -> tuple[Connection, Event] | None:
        while (item := self.host.next_event()) is not None:
            conn, event = item
            if type(event) is SendWatermark:
                # Ours, not the application's: the connection nears the end of our slice (every driver drains
                # events after each input and output, so this runs long before the margin is used up).
                self._claim(conn)
                continue
            return item
        return None

    def packets_to_send(self, now: float) -> list[bytes]:
        self._now = now
        return self.host.packets_to_send(now)

    def get_timer(self) -> float | None:
        deadline = self.host.get_timer()
        for peer in self.peers.values():
            for t in (peer.next_heartbeat, peer.retransmit_at, self._death_deadline(peer)):
                if t is not None and (deadline is None or t < deadline):
                    deadline = t
        return deadline

    def handle_timer(self, now: float) -> None:
        self._now = now
        host_deadline = self.host.get_timer()
        if host_deadline is not None and host_deadline <= now:
            self.host.handle_timer(now)
        for peer in self.peers.values():
            death = self._death_deadline(peer)
            if death is not None and death <= now:
                self._declare_dead(peer, now)
            if peer.retransmit_at is not None and peer.retransmit_at <= now:
                self.counters["control_retransmits"] += 1
                for batch in peer.retransmit(now):
                    self._send_control(peer, control.encode_batch(batch))
            if peer.next_heartbeat <= now:
                self.counters["heartbeats_sent"] += 1
                self._send_control(peer, control.encode_heartbeat(self._heartbeat(peer)))
                peer.next_heartbeat = now + self.cluster.timing.heartbeat_interval

    # -- the tunnel ------------------------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[tuple, bytes]]:
        """(peer address, datagram) pairs due now; call after ``packets_to_send``."""
        self._now = now
        for peer in self.peers.values():
            if peer.live:
                for batch in peer.take_batches(now):
                    self._send_control(peer, control.encode_batch(batch))
        out = self._datagrams
        self._datagrams = []
        return out

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One UDP datagram from the cluster network. Anything not authentic is dropped and counted."""
        self._now = now
        opened = self.opener.open(data)
        if opened is None:
            return
        peer = self.peers[opened.sender]
        self._heard(peer, opened.incarnation, now)
        if opened.kind is Kind.DATA:
            if opened.hops > 1:
                self.counters["forwarded_in_too_many_hops"] += 1
                return
            self.counters["forwarded_in"] += 1
            self._raw, self._forwarded, self._raw_unfinished = opened.payload, True, False
            try:
                self.host.receive_packet(opened.payload, now)
            finally:
                self._forwarded = False
            return
        message = control.decode(opened.payload)
        if message is None:
            self.counters["control_malformed"] += 1
        elif message.receiver != self.node_id:
            self.counters["control_not_for_us"] += 1
        elif type(message) is Batch:
            self._on_batch(peer, message, now)
        elif type(message) is Ack:
            self._on_ack(peer, message, now)
        else:
            self._on_heartbeat(peer, message)

    def _send_control(self, peer: Peer, message: bytes) -> None:
        self._datagrams.append((peer.address, self.sealer.control(message)))

    def _forward(self, peer: Peer, reason: str) -> None:
        self.counters[reason] += 1
        if not self._raw_unfinished:
            self.counters["forwarded_out"] += 1
            self._datagrams.append((peer.address, self.sealer.data(self._raw, hops=1)))
            return
        try:
            pieces = fit(self._raw, self.host.mtu, self._raw_partial)
        except WireError:
            self.counters["forward_unsplittable"] += 1  # not TCP: nothing the kernel would offload this way
            return
        self.counters["forwarded_out"] += len(pieces)
        if len(pieces) > 1:
            self.counters["forwarded_cut"] += 1
        for piece in pieces:
            self._datagrams.append((peer.address, self.sealer.data(piece, hops=1)))

    # ---------------------------------------------------------------------------------------------------------
    # The classifier (docs/anycast.md, "Classification"): the Host's policies for what matches no connection.

    def _unmatched(self, host: Host, packet: IpPacket, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        if flags & (SYN | ACK) == SYN:
            # (1) A SYN is ours; it reached this policy only because nothing listens on that port.
            self.counters["syn_no_listener"] += 1
            reset_unmatched(host, packet, seg, now)
            return
        key = (packet.src, seg.src_port, packet.dst, seg.dst_port)
        owner = self.claims.owner(key) or self._orphan_owner(key)  # (2) claimed by a peer
        reason = "forward_claimed"
        if owner is None and flags & ACK:
            owner = self.plan.owner_of(seg.ack - 1)  # (3) the node whose bytes the client acknowledges
            reason = "forward_by_ack"
        if owner is None:
            # (5) No ACK and unclaimed (a bare RST, say): only the owner can act on it, and we cannot tell who.
            if self._forwarded:
                self.counters["stranger_dropped"] += 1
                return
            self.counters["flooded"] += 1
            for peer in self.peers.values():
                if peer.live:
                    self._forward(peer, "flooded_copies")
            return
        if owner == self.node_id:
            # (4) Ours and unknown: what TCP requires. The only place a RST for a stranger comes from.
            self.counters["owner_reset"] += 1
            reset_unmatched(host, packet, seg, now)
            return
        peer = self.peers.get(owner)
        if self._forwarded:
            self.counters["not_forwarded_twice"] += 1  # a stale view somewhere; never loop
            return
        if peer is None or not peer.live:
            # (6) The owner is dead (or not in our plan): the configured policy.
            if self.cluster.dead_owner is DeadOwner.RST:
                self.counters["dead_owner_reset"] += 1
                reset_unmatched(host, packet, seg, now)
            else:
                self.counters["dead_owner_dropped"] += 1
            return
        self._forward(peer, reason)

    def _orphan_owner(self, key: FourTuple) -> int | None:
        for owner, keys in self._orphans.items():
            if key in keys:
                return owner
        return None

    def _foreign_ack(self, host: Host, packet: IpPacket, seg: TcpSegment, now: float) -> bool:
        """A half-open connection here got an ACK it cannot accept: the client finished its handshake with
        another node (its SYN reached both). Forward the ACK there and forget our half-open copy."""
        if self._forwarded:
            return False
        key = (packet.src, seg.src_port, packet.dst, seg.dst_port)
        owner = self.claims.owner(key) or self.plan.owner_of(seg.ack - 1)
        peer = self.peers.get(owner)
        if peer is None or not peer.live:
            return False
        self._forward(peer, "forward_handshake_elsewhere")
        return True

    def _unmatched_icmp(self, host: Host, packet: IpPacket, msg: IcmpMessage, quoted: QuotedTcp, now: float) -> None:
        """An ICMP error quoting a segment we did not send: route it by the quoted sequence number, which is the
        owner's, so path-MTU discovery works for connections owned elsewhere."""
        key = (quoted.dst, quoted.dst_port, quoted.src, quoted.src_port)
        owner = self.claims.owner(key) or self.plan.owner_of(quoted.seq)
        peer = self.peers.get(owner)
        if owner == self.node_id or self._forwarded or peer is None or not peer.live:
            self.counters["icmp_no_connection"] += 1
            return
        self._forward(peer, "forward_icmp")

    # ---------------------------------------------------------------------------------------------------------
    # Claims we make

    def _on_open(self, conn: Connection) -> None:
        conn.set_send_limit(self._fence)
        conn.set_send_watermark(self._mark)

    def _on_close(self, conn: Connection) -> None:
        key = client_tuple(conn)
        claim = self.own.get(key)
        if claim is not None and claim.conn is conn:
            self._release(key)
            while self._claim_queue and len(self.own) < self.cluster.max_claims:
                waiting = self._claim_queue.popleft()
                if waiting.state is not State.CLOSED:
                    self._claim(waiting)
        elif conn in self._claim_queue:
            self._claim_queue.remove(conn)

    def _release(self, key: FourTuple) -> None:
        _log.info("claim.released", conn=self.own[key].conn)
        del self.own[key]
        self._own_set.discard(key)
        for peer in self.peers.values():
            if peer.live:
                peer.queue(Op.RELEASE, key)
        self.counters["claims_released"] += 1

    def release_all(self, now: float) -> None:
        """Shutting down: release every claim at once, TIME-WAIT's included, so that peers stop routing those
        clients here; then wait for ``control_settled`` before going away."""
        self._now = now
        self._claim_queue.clear()
        for key in list(self.own):
            self._release(key)

    @property
    def control_settled(self) -> bool:
        """Every live peer has acknowledged everything we queued for it."""
        return all(peer.idle for peer in self.peers.values() if peer.live)

    def _claim(self, conn: Connection) -> None:
        key = client_tuple(conn)
        if key in self.own:
            return
        if len(self.own) >= self.cluster.max_claims:
            self.counters["claims_waiting_for_room"] += 1
            self._claim_queue.append(conn)
            return
        waiting = {peer.id for peer in self.peers.values() if peer.live}
        claim = _OwnClaim(conn, waiting, self._now)
        self.own[key] = claim
        self._own_set.add(key)
        self.counters["claims_made"] += 1
        _log.info("claim.made", conn=conn, waiting_for=sorted(waiting))
        for peer_id in waiting:
            self.peers[peer_id].queue(Op.CLAIM, key)
        if not waiting:
            self._lift_fence(claim, claim.started)

    def _lift_fence(self, claim: _OwnClaim, now: float) -> None:
        claim.conn.set_send_limit(None)
        self.claim_rtts.append(max(now - claim.started, 0.0))
        _log.info("claim.acknowledged", conn=claim.conn, seconds=round(now - claim.started, 6))

    def _acknowledged(self, peer: Peer, batch: Batch, now: float) -> None:
        for op, key in batch.ops:
            if op is Op.CLAIM:
                claim = self.own.get(key)
                if claim is not None and peer.id in claim.waiting:
                    claim.waiting.discard(peer.id)
                    if not claim.waiting:
                        self._lift_fence(claim, now)

    # ---------------------------------------------------------------------------------------------------------
    # Control messages we receive

    def _on_batch(self, peer: Peer, batch: Batch, now: float) -> None:
        if peer.rx_epoch is None or batch.epoch > peer.rx_epoch:
            if batch.seq != 1:
                if peer.rx_epoch is None:
                    # We hold nothing of this stream (we restarted, or declared it dead): ask for a new epoch.
                    self._send_control(peer, control.encode_ack(Ack(peer.id, batch.epoch, 0)))
                return  # otherwise its first batch is still on the way
            peer.rx_epoch, peer.rx_expected, peer.staging = batch.epoch, 1, None
        elif batch.epoch < peer.rx_epoch:
            self.counters["control_stale_epoch"] += 1
            return
        if batch.seq == peer.rx_expected:
            if not self._apply(peer, batch.ops):
                self.counters["claims_refused_table_full"] += 1
                return  # unacknowledged: the owner keeps its fence up and retransmits
            peer.rx_expected += 1
        elif batch.seq > peer.rx_expected:
            self.counters["control_out_of_order"] += 1
        self._send_control(peer, control.encode_ack(Ack(peer.id, peer.rx_epoch, peer.rx_expected - 1)))

    def _apply(self, peer: Peer, ops: tuple) -> bool:
        claims, owner = self.claims, peer.id
        for op, key in ops:
            staging = peer.staging
            if op is Op.CLAIM:
                if staging is None:
                    if not claims.claim(owner, key):
                        return False
                elif len(staging) < claims.max_per_owner:
                    staging.add(key)
                elif key not in staging:
                    return False  # a snapshot larger than any owner may hold: refuse it, as a full table
            elif op is Op.RELEASE:
                if staging is not None:
                    staging.discard(key)
                else:
                    claims.release(owner, key)
            elif op is Op.SNAPSHOT_BEGIN:
                peer.staging = set()
            elif staging is not None:  # SNAPSHOT_END
                if not claims.replace(owner, staging):
                    return False
                peer.staging = None
        return True

    def _on_ack(self, peer: Peer, ack: Ack, now: float) -> None:
        if ack.seq == 0:
            if peer.lost_state(ack.epoch):
                self.counters["control_resyncs"] += 1
                peer.open_epoch(self._own_set.keys)
            return
        for batch in peer.on_ack(ack.epoch, ack.seq, now):
            self._acknowledged(peer, batch, now)

    def _heartbeat(self, peer: Peer) -> Heartbeat:
        digests = [(self.node_id, *self._own_set.summary())]
        digests.extend((owner, *self.claims.summary(owner)) for owner in self.claims.owners())
        return Heartbeat(peer.id, tuple(digests))

    def _on_heartbeat(self, peer: Peer, heartbeat: Heartbeat) -> None:
        """The peer tells us what it holds of our claims; if it keeps disagreeing while nothing of ours is in
        flight to it, it has lost track (a release or claim it dropped): resend everything in a new epoch."""
        self.counters["heartbeats_received"] += 1
        held = next(((count, digest) for owner, count, digest in heartbeat.digests if owner == self.node_id), (0, 0))
        if not peer.live or not peer.idle or held == self._own_set.summary():
            peer.digest_mismatches = 0
            return
        peer.digest_mismatches += 1
        if peer.digest_mismatches >= 2:
            self.counters["control_resyncs"] += 1
            peer.open_epoch(self._own_set.keys)

    # ---------------------------------------------------------------------------------------------------------
    # Liveness

    def _heard(self, peer: Peer, incarnation: int, now: float) -> None:
        peer.heard_at = now
        if peer.incarnation is not None and incarnation != peer.incarnation:
            # It restarted: whatever it owned is gone, and it remembers none of our claims.
            self.counters["peer_restarts"] += 1
            _log.info(
                "peer.restarted", peer=peer.id, incarnation=incarnation, dropped_claims=self.claims.summary(peer.id)[0]
            )
            self.claims.drop_owner(peer.id)
            self._orphans.pop(peer.id, None)
            peer.reset_receive()
            peer.open_epoch(self._own_set.keys)
        peer.incarnation = incarnation
        if peer.liveness is not Liveness.ALIVE:
            _log.info("peer.alive", peer=peer.id, was=peer.liveness.value, incarnation=incarnation)
        if peer.liveness is Liveness.DEAD:
            self.counters["peer_revivals"] += 1
            self._orphans.pop(peer.id, None)  # its snapshot brings them back if they live on
            peer.open_epoch(self._own_set.keys)
        peer.liveness = Liveness.ALIVE

    def _death_deadline(self, peer: Peer) -> float | None:
        return None if peer.liveness is Liveness.DEAD else peer.heard_at + self.cluster.timing.dead_after

    def _declare_dead(self, peer: Peer, now: float) -> None:
        self.counters["peer_deaths"] += 1
        _log.info(
            "peer.dead", peer=peer.id, silent_for=round(now - peer.heard_at, 3), claims=self.claims.summary(peer.id)[0]
        )
        peer.liveness = Liveness.DEAD
        peer.stop_stream()
        peer.reset_receive()
        orphans = self.claims.drop_owner(peer.id)
        if orphans:
            self._orphans[peer.id] = orphans
        for claim in self.own.values():
            if peer.id in claim.waiting:
                claim.waiting.discard(peer.id)
                if not claim.waiting:
                    self._lift_fence(claim, now)

    # ---------------------------------------------------------------------------------------------------------
    # Reconfiguration (an operator's reload)

    def reconfigure(self, peers: Mapping[int, tuple], keys: ClusterKeys, now: float) -> None:
        """Take a new peer list and key set. A removed peer is forgotten as if it had died for good (its claims
        dropped, our fences no longer wait for it); an added one starts unknown, with our claims as its snapshot."""
        self._now = now
        _check_peer_ids(self.cluster, peers)
        self.sealer.keys = keys
        self.opener.keys = keys
        for peer_id in [p for p in self.peers if p not in peers]:
            self.counters["peers_removed"] += 1
            self._declare_dead(self.peers.pop(peer_id), now)
            self._orphans.pop(peer_id, None)  # gone from the plan: its clients meet the dead-owner policy anyway
            self.opener.forget(peer_id)
        for peer_id, address in peers.items():
            peer = self.peers.get(peer_id)
            if peer is None:
                self.counters["peers_added"] += 1
                peer = self.peers[peer_id] = Peer(peer_id, address, self.cluster.timing, now)
                peer.open_epoch(self._own_set.keys)
            peer.address = address
        self.opener.senders = self.peers.keys()

    # ---------------------------------------------------------------------------------------------------------
    # Application calls, as on a Host

    def listen(self, *args, **kwargs):
        return self.host.listen(*args, **kwargs)

    def unlisten(self, listener) -> None:
        self.host.unlisten(listener)

    def connect(self, *args, **kwargs) -> Connection:
        return self.host.connect(*args, **kwargs)

    def stats(self) -> dict:
        return {
            "node": self.node_id,
            "incarnation": self.incarnation,
            "connections": len(self.host.connections),
            "claims_own": len(self.own),
            "claims_held": len(self.claims),
            "peers": {p.id: p.liveness.value for p in self.peers.values()},
            "counters": dict(self.counters),
            "tunnel_drops": dict(self.opener.drops),
            "host_drops": dict(self.host.drops),
        }
