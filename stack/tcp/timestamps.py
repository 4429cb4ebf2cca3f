"""RFC 7323 timestamps for one connection: the clock, PAWS, the TS.Recent rule and RTT measurement."""

from ..seq import SEQ_MASK, seq_le, seq_lt
from ..wire import RST, TcpSegment

# RFC 7323 §5.5: "If the connection has been idle for more than 24 days, TS.Recent is invalid".
PAWS_IDLE = 24 * 86400.0
TICKS_PER_SECOND = 1000  # our TSval clock: an echo dates the segment it names to within 1 ms
OPTION_SPACE = 12  # NOP, NOP, kind, length, TSval, TSecr (RFC 7323 Appendix A layout)


class Timestamps:
    __slots__ = ("enabled", "last_ack_sent", "offset", "paws_drops", "recent", "recent_at")

    def __init__(self, iss: int) -> None:
        self.enabled = False  # agreed in the SYN exchange (RFC 7323 §3.2)
        self.recent = 0  # TS.Recent
        self.recent_at = 0.0
        self.last_ack_sent = 0  # Last.ACK.sent
        # RFC 7323 §5.4: a per-connection offset to the 1 ms clock, here derived from the secret-keyed ISS.
        self.offset = (iss * 0x9E3779B1) & SEQ_MASK
        self.paws_drops = 0

    def agree(self, offered: tuple[int, int] | None, wanted: bool, now: float) -> None:
        self.enabled = wanted and offered is not None
        if self.enabled:
            self.recent, self.recent_at = offered[0], now

    def value(self, now: float) -> int:
        """TSval: a 1 ms clock (RFC 7323 §5.4 allows 1 ms to 1 s per tick)."""
        return (int(now * TICKS_PER_SECOND) + self.offset) & SEQ_MASK

    def option(self, now: float) -> tuple[int, int]:
        return self.value(now), self.recent

    def paws_rejects(self, seg: TcpSegment, now: float) -> bool:
        """RFC 7323 §5.3 R1 (PAWS): "If there is a Timestamps option in the arriving segment, SEG.TSval <
        TS.Recent, TS.Recent is valid, and if the RST bit is not set, then treat the arriving segment as not
        acceptable: Send an acknowledgment in reply ... and drop the segment."""
        ts = seg.options.timestamps
        if ts is None or seg.flags & RST or not seq_lt(ts[0], self.recent):
            return False
        if now - self.recent_at > PAWS_IDLE:
            # RFC 7323 §5.5: TS.Recent is invalid after 24 days idle; this segment's timestamp takes its place.
            self.recent, self.recent_at = ts[0], now
            return False
        self.paws_drops += 1
        return True

    def update_recent(self, seg: TcpSegment, now: float) -> None:
        """RFC 7323 §4.3 (2): "If SEG.TSval >= TS.Recent and SEG.SEQ =< Last.ACK.sent, then SEG.TSval is copied
        to TS.Recent; otherwise, it is ignored." (called for acceptable segments only)."""
        ts = seg.options.timestamps
        if ts is not None and seq_le(seg.seq, self.last_ack_sent) and not seq_lt(ts[0], self.recent):
            self.recent, self.recent_at = ts[0], now

    def rtt(self, seg: TcpSegment, now: float) -> float | None:
        """RFC 7323 §4.1 (RTTM): an RTT sample from the echoed timestamp of an ACK for new data."""
        ts = seg.options.timestamps if self.enabled else None
        if ts is None or not ts[1]:
            return None
        elapsed = (self.value(now) - ts[1]) & SEQ_MASK
        return elapsed / TICKS_PER_SECOND if elapsed < 1 << 31 else None
