"""Congestion control behind a small interface, chosen per connection by name.

The sender owns loss detection and recovery (SACK scoreboard, RACK, PRR); an algorithm only decides how cwnd
and ssthresh move: growth on ACKs outside recovery, the target after a congestion event, and the reaction to a
retransmission timeout. During recovery the sender paces cwnd towards ``ssthresh`` itself (RFC 6937 PRR) and
calls ``on_recovery_end`` when recovery is over.
"""

from typing import Protocol


class CongestionControl(Protocol):
    name: str
    cwnd: int  # bytes
    ssthresh: int  # bytes

    def on_ack(self, acked: int, flight: int, now: float, rtt: float | None, snd_una: int, snd_nxt: int) -> None:
        """Outside recovery: ``acked`` bytes were newly delivered (cumulatively or by SACK) while ``flight`` bytes
        were outstanding. ``rtt`` is the RTT sample this ACK gave (None if none), ``snd_una``/``snd_nxt`` the
        sequence numbers after it (HyStart++ uses them to find round boundaries)."""

    def on_congestion_event(self, flight: int, now: float) -> None:
        """Loss was detected (fast retransmit, RACK) and recovery begins: set ``ssthresh``, the window recovery
        converges to. Called once per recovery episode."""

    def on_recovery_end(self, now: float) -> None:
        """Recovery is complete: RFC 6675 / RFC 6937 set cwnd to ssthresh."""

    def on_timeout(self, flight: int, now: float) -> None:
        """The retransmission timer expired with ``flight`` bytes outstanding (RFC 5681 (4))."""


def initial_window(smss: int, segments: int) -> int:
    """The initial cwnd in bytes: RFC 6928's ``min(10*MSS, max(2*MSS, 14600))`` generalised to N segments, and
    for N <= 4 RFC 5681 (3.1)'s byte limits."""
    if segments <= 4:
        if smss > 2190:
            return 2 * smss
        if smss > 1095:
            return 3 * smss
        return 4 * smss
    return min(segments * smss, max(2 * smss, segments * 1460))


class Reno:
    """RFC 5681 slow start and congestion avoidance with appropriate byte counting (RFC 3465, L = 2); with the
    sender's recovery this is NewReno (RFC 6582) or SACK-based recovery (RFC 6675)."""

    name = "reno"
    __slots__ = ("_acked_in_ca", "cwnd", "smss", "ssthresh")

    def __init__(self, smss: int, initial_window_segments: int) -> None:
        self.smss = smss
        self.cwnd = initial_window(smss, initial_window_segments)
        # RFC 5681 (3.1): "The initial value of ssthresh SHOULD be set arbitrarily high".
        self.ssthresh = 1 << 30
        self._acked_in_ca = 0

    def on_ack(self, acked: int, flight: int, now: float, rtt: float | None, snd_una: int, snd_nxt: int) -> None:
        if self.cwnd < self.ssthresh:
            # RFC 5681 (2): "cwnd += min (N, SMSS)"; RFC 3465 §2.2 allows up to 2*SMSS per ACK (L = 2), which
            # keeps slow start exponential when the receiver delays its ACKs.
            self.cwnd += min(acked, 2 * self.smss)
            return
        # RFC 5681 §3.1, the byte-counting form of (3): grow by one SMSS per cwnd of data acknowledged.
        self._acked_in_ca += acked
        if self._acked_in_ca >= self.cwnd:
            self._acked_in_ca -= self.cwnd
            self.cwnd += self.smss

    def on_congestion_event(self, flight: int, now: float) -> None:
        # RFC 5681 (4) / RFC 6675 §5 step (4.2): "ssthresh = cwnd = (FlightSize / 2)"; PRR does the cwnd part.
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self._acked_in_ca = 0

    def on_recovery_end(self, now: float) -> None:
        self.cwnd = self.ssthresh

    def on_timeout(self, flight: int, now: float) -> None:
        # RFC 5681 (4): "ssthresh = max (FlightSize / 2, 2*SMSS)"; then cwnd to the loss window, 1 SMSS.
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.smss
        self._acked_in_ca = 0


# Imported here, below Reno and initial_window, because cubic.py builds on this module.
from .cubic import Cubic  # noqa: E402

ALGORITHMS: dict[str, type] = {"reno": Reno, "cubic": Cubic}


def make_congestion_control(name: str, smss: int, initial_window_segments: int) -> CongestionControl:
    try:
        algorithm = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}: choose one of {sorted(ALGORITHMS)}") from None
    return algorithm(smss, initial_window_segments)
