"""The sending half of a connection: the send buffer, the send window, retransmission and congestion state.

Names follow RFC 9293 §3.3.1 (``snd_una``, ``snd_nxt``, ``snd_wnd``, ``snd_wl1``, ``snd_wl2``, ``iss``), plus
BSD's ``snd_max``: the highest sequence number sent so far. After a retransmission timeout ``snd_nxt`` goes
back to ``snd_una`` and climbs again (go-back-N), so ``snd_max`` is what the RFC's "SND.NXT" means wherever an
acknowledgment is checked.
"""

from ..seq import SEQ_MASK, seq_add, seq_ge, seq_lt, seq_sub
from .config import TcpConfig
from .congestion import CongestionControl, make_congestion_control
from .rtt import RttEstimator

# RFC 6298 (5.7): "the RTO MUST be re-initialized to 3 seconds when data transmission begins (i.e., after the
# three-way handshake completes)" if the SYN or SYN-ACK was retransmitted.
RTO_AFTER_SYN_LOSS = 3.0


class Sender:
    __slots__ = (
        "buf",
        "buf_seq",
        "buffer_size",
        "cc",
        "eff_mss",
        "fin_queued",
        "iss",
        "max_snd_wnd",
        "persist_at",
        "persist_backoff",
        "retransmit_at",
        "retransmits",
        "rtt",
        "rtx_since",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "sack_ok",
        "syn_retransmitted",
        "timed_at",
        "timed_seq",
        "timeouts",
    )

    def __init__(self, iss: int, config: TcpConfig, send_mss: int) -> None:
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0  # SND.WND.SHIFT (RFC 7323 §2.2)
        self.sack_ok = False
        # Application data not yet acknowledged; buf[0] has sequence number buf_seq (ISS + 1 + bytes acked).
        self.buf = bytearray()
        self.buf_seq = seq_add(iss, 1)
        self.buffer_size = config.send_buffer
        self.fin_queued = False
        self.eff_mss = send_mss
        self.cc: CongestionControl = make_congestion_control(
            config.congestion_control, send_mss, config.initial_window_segments
        )
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.retransmit_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        # Karn's algorithm: one segment is timed at a time and never one that was retransmitted.
        self.timed_seq: int | None = None
        self.timed_at = 0.0
        self.rtx_since: float | None = None  # when the current run of timeouts began (for R2)
        self.timeouts = 0  # consecutive timeouts without progress (for R1)
        self.retransmits = 0
        self.syn_retransmitted = False

    # -- queueing -------------------------------------------------------------------------------------------

    def queue(self, data: bytes) -> int:
        """Append what fits of ``data`` to the send buffer; return how many bytes were taken."""
        room = self.buffer_size - len(self.buf)
        if room <= 0:
            return 0
        if len(data) > room:
            data = data[:room]
        self.buf += data
        return len(data)

    @property
    def free_space(self) -> int:
        return self.buffer_size - len(self.buf)

    @property
    def data_end(self) -> int:
        """Sequence number just past the last queued byte (where the FIN goes)."""
        return (self.buf_seq + len(self.buf)) & SEQ_MASK

    @property
    def flight_size(self) -> int:
        """RFC 5681 FlightSize: sent but not yet cumulatively acknowledged."""
        return seq_sub(self.snd_nxt, self.snd_una)

    @property
    def fin_acked(self) -> bool:
        return self.fin_queued and self.snd_una == seq_add(self.data_end, 1)

    # -- acknowledgments ------------------------------------------------------------------------------------

    def ack_acceptable(self, ack: int) -> bool:
        """RFC 9293 §3.10.7.4 fifth: "If SND.UNA < SEG.ACK =< SND.NXT" (SND.NXT being what we have sent)."""
        return seq_lt(self.snd_una, ack) and seq_ge(self.snd_max, ack)

    def on_ack(self, ack: int, now: float) -> int:
        """Take a new cumulative acknowledgment (``ack_acceptable`` is true); return the data bytes it frees."""
        flight = seq_sub(self.snd_max, self.snd_una)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack  # the originals arrived after all; no need to resend them
        freed = min(max(seq_sub(ack, self.buf_seq), 0), len(self.buf))
        if freed:
            del self.buf[:freed]  # bytearray deletes from the front in O(1)
            self.buf_seq = seq_add(self.buf_seq, freed)
        if self.timed_seq is not None and seq_ge(ack, self.timed_seq):
            self.rtt.sample(now - self.timed_at)
            self.timed_seq = None
        if freed:
            # RFC 5681 §3.1: cwnd grows with acknowledged data, not with the SYN or FIN.
            self.cc.on_ack(freed, flight, now, None, ack, self.snd_max)
        self.timeouts = 0
        self.rtx_since = None
        # RFC 6298 (5.2): "When all outstanding data has been acknowledged, turn off the retransmission timer."
        # (5.3): "When an ACK is received that acknowledges new data, restart the retransmission timer".
        self.retransmit_at = None if ack == self.snd_max else now + self.rtt.rto
        return freed

    def update_window(self, seq: int, ack: int, window: int) -> None:
        """RFC 9293 §3.10.7.4 fifth: "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated. If
        (SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)), set SND.WND <- SEG.WND, set
        SND.WL1 <- SEG.SEQ, and set SND.WL2 <- SEG.ACK." (the caller has checked the first condition)."""
        if seq_lt(self.snd_wl1, seq) or (self.snd_wl1 == seq and seq_ge(ack, self.snd_wl2)):
            self.set_window(seq, ack, window)

    def set_window(self, seq: int, ack: int, window: int) -> None:
        self.snd_wnd = window
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if window > self.max_snd_wnd:
            self.max_snd_wnd = window
        if window:
            self.persist_at = None
            self.persist_backoff = 0

    # -- transmission ---------------------------------------------------------------------------------------

    def note_sent(self, seq: int, length: int, now: float) -> None:
        """Account for a segment occupying ``length`` sequence numbers from ``seq`` (= ``snd_nxt``)."""
        end = seq_add(seq, length)
        self.snd_nxt = end
        if seq_lt(seq, self.snd_max):
            self.retransmits += 1
        if seq_lt(self.snd_max, end):
            if self.timed_seq is None and not seq_lt(seq, self.snd_max):
                self.timed_seq = end
                self.timed_at = now
            self.snd_max = end
        # RFC 6298 (5.1): "Every time a packet containing data is sent (including a retransmission), if the
        # timer is not running, start it running so that it will expire after RTO seconds".
        if self.retransmit_at is None:
            self.retransmit_at = now + self.rtt.rto

    def usable_window(self) -> int:
        """RFC 5681 §3.1: send at most min(cwnd, rwnd) beyond SND.UNA."""
        wnd = self.snd_wnd if self.snd_wnd < self.cc.cwnd else self.cc.cwnd
        return wnd - seq_sub(self.snd_nxt, self.snd_una)

    def on_retransmit_timeout(self, now: float, syn: bool) -> None:
        """RFC 6298 (5.4)-(5.6) and RFC 5681 (4): go back to SND.UNA, back off, shrink cwnd to one segment."""
        self.retransmit_at = None
        if self.rtx_since is None:
            self.rtx_since = now
        self.timeouts += 1
        if syn:
            self.syn_retransmitted = True
        else:
            self.cc.on_timeout(seq_sub(self.snd_max, self.snd_una), now)
        self.rtt.on_timeout()
        self.timed_seq = None  # Karn: no sample from anything in flight now
        self.snd_nxt = self.snd_una

    def on_established(self) -> None:
        if self.syn_retransmitted:
            # RFC 5681 §3.1: "if the SYN or SYN/ACK is lost, the initial window used by a sender after a
            # correctly transmitted SYN MUST be one segment consisting of at most SMSS bytes."
            self.cc.cwnd = self.eff_mss
            if self.rtt.srtt is None and self.rtt.rto < RTO_AFTER_SYN_LOSS:
                self.rtt.rto = RTO_AFTER_SYN_LOSS

    def arm_persist(self, now: float, rto_max: float) -> None:
        """RFC 9293 §3.8.6.1 (MUST-35..37): probe a zero window, backing off exponentially."""
        if self.persist_at is None:
            self.persist_at = now + min(self.rtt.rto * (1 << self.persist_backoff), rto_max)

    def on_persist_timeout(self) -> None:
        self.persist_at = None
        if self.persist_backoff < 16:
            self.persist_backoff += 1
