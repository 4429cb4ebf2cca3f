"""Congestion control behind a small interface, so algorithms can be chosen per connection.

This module holds RFC 5681 slow start and congestion avoidance; loss recovery beyond the retransmission
timeout (fast retransmit, SACK, CUBIC) plugs in through the same interface.
"""

from typing import Protocol


class CongestionControl(Protocol):
    cwnd: int
    ssthresh: int

    def on_ack(self, acked: int, flight: int) -> None:
        """``acked`` new bytes were cumulatively acknowledged while ``flight`` bytes were outstanding."""

    def on_timeout(self, flight: int) -> None:
        """The retransmission timer expired with ``flight`` bytes outstanding."""


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
    """RFC 5681 §3.1 slow start and congestion avoidance, with appropriate byte counting (RFC 3465, L = 2)."""

    __slots__ = ("_acked_in_ca", "cwnd", "smss", "ssthresh")

    def __init__(self, smss: int, initial_window_segments: int) -> None:
        self.smss = smss
        self.cwnd = initial_window(smss, initial_window_segments)
        # RFC 5681 (3.1): "The initial value of ssthresh SHOULD be set arbitrarily high".
        self.ssthresh = 1 << 30
        self._acked_in_ca = 0

    def on_ack(self, acked: int, flight: int) -> None:
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

    def on_timeout(self, flight: int) -> None:
        # RFC 5681 (4): "ssthresh = max (FlightSize / 2, 2*SMSS)"; then cwnd to the loss window, 1 SMSS.
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.smss
        self._acked_in_ca = 0
