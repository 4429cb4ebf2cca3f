"""RACK-TLP loss detection (RFC 8985), the time-based loss detection Linux uses.

A segment is lost when a segment sent after it has been delivered and more than one RTT plus a reordering
window has passed since it was sent. Tail loss probes (TLP) turn a lost tail, which no later delivery would
reveal, into a SACK that does.
"""

from .scoreboard import Scoreboard, Sent

# RFC 8985 §6.2: "RACK.reo_wnd_incr ... MAY be ... RACK.min_RTT/4"; the multiplier is capped like Linux (16).
REO_WND_MULT_MAX = 16
REO_WND_PERSIST = 16  # rounds a widened reordering window persists after the last D-SACK (RFC 8985 §6.2.4)
# RFC 8985 §7.2: "WCDelAckT ... worst-case delayed ACK timer ... RECOMMENDED 200 ms".
WORST_CASE_DELAYED_ACK = 0.2
DUP_THRESH = 3  # RFC 6675 §2
TIMESTAMP_GRANULARITY = 0.001  # our TSval clock ticks every millisecond


class Rack:
    __slots__ = (
        "dsack_round_end",
        "end",
        "fack",
        "min_rtt",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reordering_seen",
        "rtt",
        "xmit_time",
    )

    def __init__(self) -> None:
        self.xmit_time = -1.0  # RACK.xmit_ts: send time of the most recently sent segment delivered
        self.end = -1  # RACK.end_seq (a stream offset)
        self.fack = -1  # RACK.fack: the highest end delivered so far
        self.rtt = 0.0  # RACK.rtt: the RTT measured by that delivery
        self.min_rtt: float | None = None
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round_end: int | None = None

    def on_delivered(self, record: Sent, now: float, ts_rtt: float | None) -> None:
        """RFC 8985 §6.2 step 2 (RACK_update) for one newly delivered segment."""
        rtt = now - record.xmit_time
        # RFC 8985 §6.2 step 1: "If the segment ... has not been retransmitted and its end is below RACK.fack,
        # the network reordered it".
        if not record.retransmitted and record.end < self.fack:
            self.reordering_seen = True
        if record.end > self.fack:
            self.fack = record.end
        if record.retransmitted:
            # RFC 8985 §6.2 step 2: an ACK for a retransmitted segment may be for the original. With timestamps
            # the echo tells: one older than the retransmission (the echo's RTT longer than this one, beyond the
            # 1 ms clock's truncation) is for the original. Without, an RTT below min_RTT is too short to be real.
            if ts_rtt is not None:
                if ts_rtt > rtt + TIMESTAMP_GRANULARITY:
                    return
            elif self.min_rtt is not None and rtt < self.min_rtt:
                return
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        if record.xmit_time > self.xmit_time or (record.xmit_time == self.xmit_time and record.end > self.end):
            self.xmit_time = record.xmit_time
            self.end = record.end
            self.rtt = rtt

    def on_dsack(self, una_offset: int, nxt_offset: int) -> None:
        """RFC 8985 §6.2.4: a D-SACK means a retransmission was spurious: widen the reordering window, at most
        once per round trip. The arguments are stream offsets (never wrapping), not sequence numbers."""
        if self.dsack_round_end is None or una_offset >= self.dsack_round_end:
            self.dsack_round_end = nxt_offset
            self.reo_wnd_mult = min(self.reo_wnd_mult + 1, REO_WND_MULT_MAX)
            self.reo_wnd_persist = REO_WND_PERSIST

    def on_recovery_end(self) -> None:
        if self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
            if self.reo_wnd_persist == 0:
                self.reo_wnd_mult = 1

    def reo_wnd(self, in_recovery: bool, sacked_segments: int, srtt: float | None) -> float:
        """RFC 8985 §6.2.4 RACK_update_reo_wnd."""
        if not self.reordering_seen and (in_recovery or sacked_segments >= DUP_THRESH):
            return 0.0
        if self.min_rtt is None:
            return 0.0
        wnd = self.min_rtt / 4 * self.reo_wnd_mult
        return min(wnd, srtt) if srtt is not None else wnd

    def detect_loss(self, board: Scoreboard, now: float, reo_wnd: float) -> tuple[list[Sent], float | None]:
        """RFC 8985 §6.2 step 5 (RACK_detect_loss): mark segments lost; return them and, if some are not yet
        overdue, when to look again (the reordering timer)."""
        lost: list[Sent] = []
        if self.xmit_time < 0:
            return lost, None
        for record in board.by_transmission():
            if record.xmit_time > self.xmit_time:
                break  # sent after the newest delivered segment: not evidence of anything yet
            if record.xmit_time == self.xmit_time and record.end >= self.end:
                continue  # sent in the same instant, after it in sequence: not before it (RFC 8985 tie-break)
            remaining = record.xmit_time + self.rtt + reo_wnd - now
            if remaining <= 0:
                if board.mark_lost(record):
                    lost.append(record)
            else:
                return lost, now + remaining
        return lost, None


def probe_timeout(srtt: float | None, flight_segments: int, rto_deadline: float | None, now: float) -> float:
    """RFC 8985 §7.2: PTO = 2*SRTT (+ WCDelAckT when one segment is in flight), 1 s without an RTT sample, and
    never later than the RTO would fire."""
    if srtt is None:
        pto = 1.0
    else:
        pto = 2 * srtt
        if flight_segments == 1:
            pto += WORST_CASE_DELAYED_ACK
    deadline = now + pto
    if rto_deadline is not None and rto_deadline < deadline:
        return rto_deadline
    return deadline
