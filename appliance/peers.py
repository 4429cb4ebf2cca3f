"""One peer, seen from this node: is it alive, and the reliable stream of our claims to it.

Claims and releases go out in numbered batches, in order, each acknowledged cumulatively and retransmitted
(go-back-N, with an RFC 6298 style timer) until acknowledged or the peer is declared dead. A stream lives for one
*epoch*; every epoch opens with a snapshot of all our claims (SNAPSHOT_BEGIN ... SNAPSHOT_END), which the
receiver swaps in atomically, then carries changes. A new epoch starts whenever the receiver may have lost track:
at start-up, when the peer restarts or comes back from the dead, when heartbeat digests keep disagreeing, and
when the receiver says it has no state for our epoch.
"""

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .claims import FourTuple
from .control import MAX_BATCH_BYTES, Batch, Entry, Op, op_size

HEADER_BYTES = 16  # a batch's own header (control.py)


class Liveness(enum.Enum):
    UNKNOWN = "unknown"  # not heard from yet: treated as alive until ``dead_after`` passes
    ALIVE = "alive"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class ControlTiming:
    heartbeat_interval: float = 0.5
    dead_after: float = 3.0  # silence after which a peer is declared dead
    initial_rto: float = 0.2
    min_rto: float = 0.05
    max_rto: float = 2.0
    window: int = 64  # batches in flight per peer

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval < self.dead_after:
            raise ValueError(
                f"heartbeat_interval={self.heartbeat_interval} must be positive and below dead_after="
                f"{self.dead_after}: a peer must get several chances to be heard before it is declared dead"
            )
        if not 0 < self.min_rto <= self.initial_rto <= self.max_rto:
            raise ValueError("control timers need 0 < min_rto <= initial_rto <= max_rto")
        if self.window < 1:
            raise ValueError(f"window={self.window} must be at least 1")


class _InFlight:
    __slots__ = ("batch", "retransmitted", "sent_at")

    def __init__(self, batch: Batch, sent_at: float) -> None:
        self.batch = batch
        self.sent_at = sent_at
        self.retransmitted = False


class Peer:
    def __init__(self, peer_id: int, address: tuple, timing: ControlTiming, now: float) -> None:
        self.id = peer_id
        self.address = address
        self.timing = timing
        self.liveness = Liveness.UNKNOWN
        self.heard_at = now  # for an UNKNOWN peer: when we started waiting for it
        self.incarnation: int | None = None
        self.next_heartbeat = now
        self.digest_mismatches = 0
        # Our stream to it.
        self.tx_epoch = 0
        self._tx_next = 1
        self._pending: deque[Entry] = deque()
        self._in_flight: deque[_InFlight] = deque()
        self.retransmit_at: float | None = None
        self._rto = timing.initial_rto
        self._srtt: float | None = None
        self._rttvar = 0.0
        # Its stream to us.
        self.rx_epoch: int | None = None
        self.rx_expected = 1
        self.staging: set[FourTuple] | None = None  # a snapshot being received

    @property
    def live(self) -> bool:
        return self.liveness is not Liveness.DEAD

    @property
    def idle(self) -> bool:
        """Nothing of ours waits to be sent to it or acknowledged by it."""
        return not self._pending and not self._in_flight

    # -- our stream -----------------------------------------------------------------------------------------

    def open_epoch(self, snapshot: Iterable[FourTuple]) -> None:
        """Start a new stream whose first batches carry every claim we hold, then whatever changes."""
        self.tx_epoch += 1
        self._tx_next = 1
        self._in_flight.clear()
        self._pending.clear()
        self.retransmit_at = None
        self.digest_mismatches = 0
        self._pending.append((Op.SNAPSHOT_BEGIN, None))
        self._pending.extend((Op.CLAIM, key) for key in snapshot)
        self._pending.append((Op.SNAPSHOT_END, None))

    def stop_stream(self) -> None:
        """The peer is dead: nothing more is sent to it until it comes back and a new epoch opens."""
        self._pending.clear()
        self._in_flight.clear()
        self.retransmit_at = None

    def queue(self, op: Op, key: FourTuple) -> None:
        self._pending.append((op, key))

    def take_batches(self, now: float) -> list[Batch]:
        """New batches to send now, as many as the window allows, each filling a datagram."""
        out = []
        pending, in_flight = self._pending, self._in_flight
        while pending and len(in_flight) < self.timing.window:
            ops: list[Entry] = []
            size = HEADER_BYTES
            while pending and size + op_size(pending[0]) <= MAX_BATCH_BYTES and len(ops) < 0xFFFF:
                entry = pending.popleft()
                ops.append(entry)
                size += op_size(entry)
            batch = Batch(self.id, self.tx_epoch, self._tx_next, tuple(ops))
            self._tx_next += 1
            in_flight.append(_InFlight(batch, now))
            out.append(batch)
        if out and self.retransmit_at is None:
            self.retransmit_at = now + self._rto
        return out

    def on_ack(self, epoch: int, seq: int, now: float) -> list[Batch]:
        """The batches this cumulative acknowledgment newly covers."""
        if epoch != self.tx_epoch:
            return []
        done = []
        sampled = False
        in_flight = self._in_flight
        while in_flight and in_flight[0].batch.seq <= seq:
            item = in_flight.popleft()
            if not item.retransmitted:  # Karn: time only what was sent once
                self._sample_rtt(now - item.sent_at)
                sampled = True
            done.append(item.batch)
        if done:
            # RFC 6298 §5: a backed-off RTO collapses only "once a new RTT measurement is obtained"; without that,
            # a path slower than the RTO would have every batch retransmitted and never yield a sample.
            if sampled:
                self._rto = self._rto_from_estimate()
            self.retransmit_at = now + self._rto if in_flight else None
        return done

    def lost_state(self, epoch: int) -> bool:
        """The peer says it has no state for ``epoch``: true if that can only mean it lost it (it had
        acknowledged part of this epoch already) rather than that our first batch is still on its way."""
        return epoch == self.tx_epoch and (not self._in_flight or self._in_flight[0].batch.seq > 1)

    def retransmit(self, now: float) -> list[Batch]:
        """The retransmission timer fired: everything in flight again, in order, and back off."""
        if not self._in_flight:
            self.retransmit_at = None
            return []
        for item in self._in_flight:
            item.retransmitted = True
        self._rto = min(self._rto * 2, self.timing.max_rto)
        self.retransmit_at = now + self._rto
        return [item.batch for item in self._in_flight]

    def _sample_rtt(self, rtt: float) -> None:
        # RFC 6298 §2.2-2.3.
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    def _rto_from_estimate(self) -> float:
        if self._srtt is None:
            return self.timing.initial_rto
        return min(max(self._srtt + 4 * self._rttvar, self.timing.min_rto), self.timing.max_rto)

    # -- its stream -----------------------------------------------------------------------------------------

    def reset_receive(self) -> None:
        self.rx_epoch = None
        self.rx_expected = 1
        self.staging = None

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.liveness.value} epoch={self.tx_epoch} in_flight={len(self._in_flight)}>"
