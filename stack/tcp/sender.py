"""The sending half of a connection: send buffer, send window, retransmission, loss recovery, congestion state.

Names follow RFC 9293 §3.3.1 (``snd_una``, ``snd_nxt``, ``snd_wnd``, ``snd_wl1``, ``snd_wl2``, ``iss``);
``snd_nxt`` is the highest sequence number sent and never moves back: retransmissions come from the scoreboard.
Inside, positions are stream offsets (data byte 0 is ISS + 1, the SYN is -1), so only the edges convert.

Loss recovery is Linux's: RACK-TLP (RFC 8985) on SACK connections, duplicate-ACK counting with NewReno
(RFC 6582) on the others, SACK-based pipe accounting (RFC 6675), Proportional Rate Reduction (RFC 6937) while
recovering, limited transmit (RFC 3042) falling out of the pipe accounting, and the RTO as the last resort.
"""

from ..seq import SEQ_MASK, seq_add, seq_lt, seq_sub
from .config import TcpConfig
from .congestion import CongestionControl, make_congestion_control
from .rack import DUP_THRESH, Rack, probe_timeout
from .rtt import RttEstimator
from .scoreboard import Scoreboard, Sent
from .sendbuffer import SendBuffer
from .timestamps import TICKS_PER_SECOND

# RFC 6298 (5.7): "the RTO MUST be re-initialized to 3 seconds when data transmission begins (i.e., after the
# three-way handshake completes)" if the SYN or SYN-ACK was retransmitted.
RTO_AFTER_SYN_LOSS = 3.0

OPEN, RECOVERY, LOSS = "open", "recovery", "loss"  # Linux's ca_state names, reported in statistics


class Sender:
    __slots__ = (
        "board",
        "buf",
        "buf_off",
        "buffer_size",
        "bytes_acked",
        "bytes_retransmitted",
        "bytes_sent",
        "cc",
        "dsacks",
        "dupacks",
        "eff_mss",
        "fin_queued",
        "iss",
        "max_snd_wnd",
        "nodelay",
        "persist_at",
        "persist_backoff",
        "prr_delivered",
        "prr_out",
        "rack",
        "rack_at",
        "recover_fs",
        "recoveries",
        "recovery_point",
        "reno_sacked",
        "retransmit_at",
        "retransmits",
        "rto_count",
        "rtt",
        "rtx_since",
        "sack_ok",
        "send_limit",
        "snd_nxt",
        "snd_una",
        "snd_up",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "state",
        "syn_due",
        "syn_retransmitted",
        "timed_at",
        "timed_end",
        "timeout_at",
        "timeouts",
        "tlp_at",
        "tlp_due",
        "tlp_end",
        "tlp_probes",
        "tlp_retransmitted",
        "una_off",
        "window_probes",
    )

    def __init__(self, iss: int, config: TcpConfig, send_mss: int) -> None:
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.una_off = -1  # stream offset of snd_una: -1 while the SYN is unacknowledged
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0  # SND.WND.SHIFT (RFC 7323 §2.2)
        self.sack_ok = False
        self.buf = SendBuffer()  # unacknowledged application data; its first byte is at offset buf_off
        self.buf_off = 0
        self.buffer_size = config.send_buffer
        self.fin_queued = False
        self.snd_up = 0  # SND.UP as an offset: just past the last urgent byte queued (RFC 9293 MUST-62)
        self.nodelay = config.nodelay
        self.send_limit: int | None = None  # a sequence number no new data or FIN may reach (set by the host)
        self.eff_mss = send_mss
        self.cc: CongestionControl = make_congestion_control(
            config.congestion_control, send_mss, config.initial_window_segments
        )
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.board = Scoreboard()
        self.rack = Rack()
        self.state = OPEN
        self.recovery_point = 0
        self.prr_delivered = self.prr_out = self.recover_fs = 0
        self.dupacks = 0
        self.reno_sacked = 0  # without SACK, each duplicate ACK stands for one segment delivered (like Linux)
        self.retransmit_at: float | None = None
        self.tlp_at: float | None = None
        self.rack_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.tlp_due = False
        self.tlp_end: int | None = None
        self.tlp_retransmitted = False
        self.syn_due = False
        self.syn_retransmitted = False
        # Karn's algorithm when there are no timestamps: time one segment, never a retransmitted one.
        self.timed_end: int | None = None
        self.timed_at = 0.0
        self.rtx_since: float | None = None  # when the current run of timeouts began (for R2)
        self.timeout_at: float | None = None  # when the retransmission timer last fired
        self.timeouts = 0  # consecutive timeouts without progress (for R1)
        self.retransmits = 0
        self.tlp_probes = 0
        self.dsacks = 0
        self.rto_count = 0
        self.window_probes = 0
        self.recoveries = 0
        self.bytes_sent = 0  # sequence space sent, retransmissions included (Linux tcpi_bytes_sent)
        self.bytes_retransmitted = 0
        self.bytes_acked = 0

    # -- positions ------------------------------------------------------------------------------------------

    @property
    def data_end(self) -> int:
        """Offset just past the last queued byte (where the FIN goes)."""
        return self.buf_off + len(self.buf)

    @property
    def nxt_off(self) -> int:
        return self.una_off + seq_sub(self.snd_nxt, self.snd_una)

    def seq_at(self, offset: int) -> int:
        return (self.snd_una + offset - self.una_off) & SEQ_MASK

    @property
    def outstanding(self) -> int:
        """Sent and not cumulatively acknowledged (RFC 5681 FlightSize), in sequence space after the SYN."""
        return seq_sub(self.snd_nxt, self.snd_una) if self.una_off >= 0 else 0

    @property
    def pipe(self) -> int:
        """RFC 6675 §4 "pipe": bytes still thought to be in the network (neither SACKed nor presumed lost)."""
        return self.outstanding - self.board.sacked_bytes - self.board.lost_bytes - self.reno_sacked

    @property
    def free_space(self) -> int:
        return self.buffer_size - len(self.buf)

    @property
    def fin_acked(self) -> bool:
        return self.fin_queued and self.una_off == self.data_end + 1

    def queue(self, data: bytes) -> int:
        """Append what fits of ``data`` to the send buffer; return how many bytes were taken."""
        room = self.buffer_size - len(self.buf)
        if room <= 0:
            return 0
        if len(data) > room:
            data = data[:room]
        self.buf.append(data)
        return len(data)

    # -- the handshake --------------------------------------------------------------------------------------

    def syn_sent(self, now: float) -> None:
        self.syn_due = False
        if self.snd_nxt == self.iss:
            self.snd_nxt = seq_add(self.iss, 1)
            self.timed_end, self.timed_at = 0, now
        else:
            self.retransmits += 1
            self.timed_end = None
        if self.retransmit_at is None:
            self.retransmit_at = now + self.rtt.rto

    def on_established(self) -> None:
        if self.syn_retransmitted:
            # RFC 5681 §3.1: "if the SYN or SYN/ACK is lost, the initial window used by a sender after a
            # correctly transmitted SYN MUST be one segment consisting of at most SMSS bytes."
            self.cc.cwnd = self.eff_mss
            if self.rtt.srtt is None and self.rtt.rto < RTO_AFTER_SYN_LOSS:
                self.rtt.rto = RTO_AFTER_SYN_LOSS

    # -- acknowledgments ------------------------------------------------------------------------------------

    def ack_acceptable(self, ack: int) -> bool:
        """RFC 9293 §3.10.7.4 fifth: "If SND.UNA < SEG.ACK =< SND.NXT"."""
        return seq_lt(self.snd_una, ack) and not seq_lt(self.snd_nxt, ack)

    def on_ack(
        self,
        ack: int,
        sack_blocks: tuple[tuple[int, int], ...],
        now: float,
        ts_rtt: float | None,
        duplicate: bool,
    ) -> int:
        """Take an ACK at or beyond SND.UNA (and not beyond SND.NXT). ``duplicate`` says the segment qualifies
        as a duplicate ACK (RFC 5681 §2: no data, no SYN/FIN, same window). Returns the data bytes freed."""
        acked = seq_sub(ack, self.snd_una)
        if not acked and self.snd_nxt == self.snd_una and self.una_off >= 0:
            return 0  # nothing in flight: an ACK that only carries data or a window has nothing for us here
        board = self.board
        sacked_before = board.sacked_bytes
        flight_before = self.outstanding
        delivered: list[Sent] = []
        freed = 0
        sample = None
        if acked > 0:
            self.snd_una = ack
            self.una_off += acked
            self.bytes_acked += acked
            delivered = board.cumulative_ack(self.una_off)
            freed = min(max(self.una_off - self.buf_off, 0), len(self.buf))
            if freed:
                self.buf.release(freed)
                self.buf_off += freed
            self.timeouts = 0
            self.rtx_since = None
            sample = self._take_rtt_sample(now, ts_rtt, flight_before)
        dsack = False
        if sack_blocks and self.sack_ok:
            dsack = self._take_sack(sack_blocks, delivered)
        elif not self.sack_ok:
            self._count_duplicate(acked, duplicate)
        rack = self.rack
        if len(delivered) > 1:
            # One ACK may deliver several SACK blocks, most recent first: take them in sequence order, so that
            # RACK does not mistake the order of the blocks for reordering in the network.
            delivered.sort(key=lambda r: r.end)
        for record in delivered:
            rack.on_delivered(record, now, ts_rtt)
        delivered_bytes = acked + board.sacked_bytes - sacked_before
        if self.tlp_end is not None and self.una_off >= self.tlp_end:
            self._end_tlp_episode(dsack, now)
        self._detect_losses(acked, now)
        if self.state is not OPEN and self.una_off >= self.recovery_point:
            self._exit_recovery(now)
        if self.state is RECOVERY:
            self._prr(delivered_bytes)
        elif freed > 0:
            # RFC 5681 §3.1: cwnd grows on ACKs of new data in order, not on SACKs, which would let limited
            # transmit change cwnd (RFC 3042 §2: it "MUST NOT be changed"); Linux's tcp_may_raise_cwnd agrees.
            self.cc.on_ack(freed, flight_before, now, sample, self.snd_una, self.snd_nxt)
        if acked > 0:
            # RFC 6298 (5.2), (5.3): off when all is acknowledged, else restart on new data acknowledged.
            self.retransmit_at = None if self.outstanding == 0 else now + self.rtt.rto
        self._arm_tlp(now)
        return freed

    def _take_rtt_sample(self, now: float, ts_rtt: float | None, flight: int) -> float | None:
        """Feed the RTO estimator; return the sample (congestion control wants the raw value)."""
        if ts_rtt is not None and self.timeout_at is not None and now - ts_rtt < self.timeout_at - 1 / TICKS_PER_SECOND:
            # The echo names a segment sent before the timer last fired: the ACKs in between were lost, so the
            # "sample" is the time the timeout took, not the path's. RFC 7323 §4.2 has the receiver echo an old
            # TSval after lost ACKs; fed to RFC 6298 each such sample raises the next RTO, and one lost ACK per
            # timeout then grows it without bound. Karn's rule, applied to the echo: no sample across a timeout.
            ts_rtt = None
        if ts_rtt is not None:
            # RFC 7323 §4.1 and Appendix G: a sample per ACK, weighted by the samples expected per RTT.
            self.rtt.sample(ts_rtt, max(1, -(-flight // (2 * self.eff_mss))))
            self.timed_end = None
            return ts_rtt
        if self.timed_end is not None and self.una_off >= self.timed_end:
            sample = now - self.timed_at
            self.rtt.sample(sample)
            self.timed_end = None
            return sample
        return None

    def _take_sack(self, blocks: tuple[tuple[int, int], ...], delivered: list[Sent]) -> bool:
        """Apply SACK blocks (RFC 2018); returns whether the first was a D-SACK (RFC 2883 §4)."""
        una, una_off, nxt = self.snd_una, self.una_off, self.snd_nxt
        dsack = False
        first_start, first_end = blocks[0]
        if not seq_lt(una, first_end) or (
            len(blocks) > 1 and not seq_lt(first_start, blocks[1][0]) and not seq_lt(blocks[1][1], first_end)
        ):
            # RFC 2883 §4: a first block below the cumulative ACK, or inside the second block, reports a
            # duplicate: some retransmission was unnecessary.
            dsack = True
            self.dsacks += 1
            self.rack.on_dsack(self.una_off, self.nxt_off)
            blocks = blocks[1:]
        for start, end in blocks:
            # Like Linux (tcp_is_sackblock_valid), ignore blocks outside (SND.UNA, SND.NXT].
            if not seq_lt(start, end) or seq_lt(start, una) or seq_lt(nxt, end):
                continue
            delivered += self.board.sack(una_off + seq_sub(start, una), una_off + seq_sub(end, una))
        return dsack

    def _count_duplicate(self, acked: int, duplicate: bool) -> None:
        """Without SACK: RFC 5681 §3.2 duplicate ACKs, each taken as one segment that left the network."""
        if acked > 0:
            self.dupacks = 0
            self.reno_sacked = max(0, self.reno_sacked - acked) if self.state is RECOVERY else 0
        elif duplicate and self.outstanding > 0:
            self.dupacks += 1
            self.reno_sacked = min(self.reno_sacked + self.eff_mss, max(self.outstanding - self.eff_mss, 0))

    def _detect_losses(self, acked: int, now: float) -> None:
        board = self.board
        if self.sack_ok:
            reo_wnd = self.rack.reo_wnd(
                self.state is not OPEN, board.sacked_bytes // max(self.eff_mss, 1), self.rtt.srtt
            )
            lost, self.rack_at = self.rack.detect_loss(board, now, reo_wnd)
        else:
            first = board.first
            triggered = (self.state is OPEN and self.dupacks >= DUP_THRESH) or (
                # RFC 6582 §3.2 (5): a partial ACK in recovery: "retransmit the first unacknowledged segment".
                self.state is RECOVERY and acked > 0 and self.una_off < self.recovery_point
            )
            lost = [first] if first is not None and triggered and board.mark_lost(first) else []
        if lost and self.state is OPEN:
            self._enter_recovery(now)

    def _enter_recovery(self, now: float) -> None:
        """RFC 6675 §5 / RFC 6937: start fast recovery for the window sent so far."""
        self.state = RECOVERY
        self.recoveries += 1
        self.recovery_point = self.nxt_off
        self.cc.on_congestion_event(self.outstanding, now)
        self.prr_delivered = self.prr_out = 0
        self.recover_fs = max(self.outstanding, 1)
        self.tlp_at = None

    def _exit_recovery(self, now: float) -> None:
        if self.state is RECOVERY:
            self.cc.on_recovery_end(now)
            self.rack.on_recovery_end()
        self.state = OPEN
        self.reno_sacked = 0
        self.dupacks = 0

    def _prr(self, delivered: int) -> None:
        """RFC 6937 §3: on each ACK in recovery, let out as much as was delivered, scaled to ssthresh."""
        if delivered <= 0:
            return
        cc, mss = self.cc, self.eff_mss
        self.prr_delivered += delivered
        pipe = self.pipe
        if pipe > cc.ssthresh:
            sndcnt = -(-self.prr_delivered * cc.ssthresh // self.recover_fs) - self.prr_out
        else:
            # PRR-SSRB: slow start back up to ssthresh, at most one MSS beyond what was delivered.
            sndcnt = min(cc.ssthresh - pipe, max(self.prr_delivered - self.prr_out, delivered) + mss)
        if self.prr_out == 0:
            sndcnt = max(sndcnt, mss)  # the fast retransmit itself always goes (as in Linux)
        cc.cwnd = pipe + max(sndcnt, 0)

    def _end_tlp_episode(self, dsack: bool, now: float) -> None:
        """RFC 8985 §7.4: a probe that was a retransmission and came back without a D-SACK repaired a real
        loss, which calls for the congestion response fast recovery would have made."""
        if self.tlp_retransmitted and not dsack and self.state is OPEN:
            self.cc.on_congestion_event(self.outstanding, now)
            self.cc.on_recovery_end(now)
        self.tlp_end = None

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 §7.2: arm the probe timeout while in the open state with data in flight."""
        if self.sack_ok and self.state is OPEN and self.outstanding > 0 and self.tlp_end is None:
            flight_segments = -(-self.outstanding // max(self.eff_mss, 1))
            self.tlp_at = probe_timeout(self.rtt.srtt, flight_segments, self.retransmit_at, now)
        else:
            self.tlp_at = None

    def update_window(self, seq: int, ack: int, window: int) -> None:
        """RFC 9293 §3.10.7.4 fifth: "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated. If
        (SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)), set SND.WND <- SEG.WND, set
        SND.WL1 <- SEG.SEQ, and set SND.WL2 <- SEG.ACK." (the caller has checked the first condition)."""
        if seq_lt(self.snd_wl1, seq) or (self.snd_wl1 == seq and not seq_lt(ack, self.snd_wl2)):
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

    def next_segment(self, now: float, force: bool = False) -> tuple[int, int, int, bool] | None:
        """The next (start, end, fin, retransmission) to send, in offsets, or None. Lost segments come first
        (RFC 6675 NextSeg), then new data as the windows, Nagle and sender SWS avoidance allow. ``force``
        sends new data the window allows whatever Nagle and SWS say (a persist-timer probe)."""
        if self.una_off < 0:
            return None
        board, cc = self.board, self.cc
        record = board.first_lost()
        if record is not None and not self.tlp_due:
            if self.pipe + (record.end - record.start) > cc.cwnd and self.pipe > 0:
                return None
            self._sent(record.end - record.start, now, retransmission=True)
            board.retransmitted(record, now)
            return record.start, record.end, record.fin, True
        nxt, data_end = self.nxt_off, self.data_end
        available = data_end - nxt
        fence = None if self.send_limit is None else self.una_off + seq_sub(self.send_limit, self.snd_una) - nxt
        if available > 0:
            rwnd_room = self.una_off + self.snd_wnd - nxt
            room = rwnd_room if self.tlp_due or force else min(rwnd_room, cc.cwnd - self.pipe)
            fenced = fence is not None and fence < room
            if fenced:
                room = fence  # nothing new beyond the host's fence (it lifts it and touches the connection)
            n = min(self.eff_mss, available, room)
            if n <= 0:
                if self.tlp_due:
                    return self._probe_tail(now)
                # Probe a closed or tiny window, but not the host's fence: the window is not what holds us back.
                if (fence is None or fence > 0) and (self.snd_wnd == 0 or nxt == self.una_off):
                    self.arm_persist(now)
                return None
            # A segment cut short by the fence may go: SWS avoidance protects the receiver's window, not our fence.
            if n < self.eff_mss and not (force or fenced or self.tlp_due or self._small_segment_ok(n, available)):
                if nxt == self.una_off:
                    self.arm_persist(now)
                return None
            fin = self.fin_queued and nxt + n == data_end
            return self._new(nxt, nxt + n + fin, fin, now)
        if available == 0 and self.fin_queued and (fence is None or fence > 0):
            return self._new(nxt, nxt + 1, True, now)  # the FIN alone; like Linux, whatever the windows
        if self.tlp_due:
            return self._probe_tail(now)
        return None

    def next_run(self, now: float, limit: int) -> tuple[int, int] | None:
        """For a device with segmentation offload: (start, end) of a run of at least two full-sized new segments,
        at most ``limit`` bytes, that ``next_segment`` would send one after another right now, recorded at once;
        or None when anything else may be due (a retransmission, a probe, a short or final segment), for
        ``next_segment`` to decide. What the peer sees is the same either way."""
        mss, nxt = self.eff_mss, self.nxt_off
        # Urgent data ahead: each segment carries its own pointer to its end (RFC 9293 §3.8.5), so no runs.
        if self.una_off < 0 or self.board.lost_bytes or self.tlp_due or self.snd_up > nxt:
            return None
        room = min(self.una_off + self.snd_wnd - nxt, self.cc.cwnd - self.pipe, self.data_end - nxt, limit)
        if self.send_limit is not None:
            room = min(room, self.una_off + seq_sub(self.send_limit, self.snd_una) - nxt)
        if self.fin_queued and nxt + room == self.data_end:
            room -= 1  # the last segment goes alone, so that the FIN can ride on it
        count = room // mss
        if count < 2:
            return None
        end = nxt + count * mss
        self.board.sent_run(nxt, end, mss, now)
        self.snd_nxt = self.seq_at(end)
        if self.timed_end is None and self.rtt.backoff == 0:
            self.timed_end, self.timed_at = nxt + mss, now
        self._sent(end - nxt, now, retransmission=False)
        return nxt, end

    def _small_segment_ok(self, n: int, available: int) -> bool:
        """RFC 9293 §3.8.6.2.1 (MUST-38) sender SWS avoidance with the Nagle algorithm (RFC 9293 §3.7.4,
        SHLD-7): a segment shorter than the MSS goes only if all queued data fits and nothing is unacknowledged
        (or Nagle is off, or the FIN follows), or it is at least half the largest window the peer offered."""
        idle = self.nxt_off == self.una_off or self.nodelay or self.fin_queued
        return (idle and n == available) or (idle and n >= self.max_snd_wnd // 2)

    def _new(self, start: int, end: int, fin: bool, now: float) -> tuple[int, int, int, bool]:
        self.board.sent(start, end, fin, now)
        self.snd_nxt = self.seq_at(end)
        if self.timed_end is None and self.rtt.backoff == 0:
            self.timed_end, self.timed_at = end, now
        if self.tlp_due:
            self.tlp_due = False
            self.tlp_end, self.tlp_retransmitted = end, False
        self._sent(end - start, now, retransmission=False)
        return start, end, fin, False

    def _probe_tail(self, now: float) -> tuple[int, int, int, bool] | None:
        """RFC 8985 §7.3: no new data can go, so the probe retransmits the last segment."""
        self.tlp_due = False
        last = self.board.last
        if last is None or last.sacked:
            return None
        self.tlp_end, self.tlp_retransmitted = self.nxt_off, True
        self._sent(last.end - last.start, now, retransmission=True)
        self.board.retransmitted(last, now)
        return last.start, last.end, last.fin, True

    def _sent(self, length: int, now: float, retransmission: bool) -> None:
        self.bytes_sent += length
        if retransmission:
            self.retransmits += 1
            self.bytes_retransmitted += length
            self.timed_end = None  # Karn
        if self.state is RECOVERY:
            self.prr_out += length
        # RFC 6298 (5.1): "if the timer is not running, start it running".
        if self.retransmit_at is None:
            self.retransmit_at = now + self.rtt.rto

    def lower_mss(self, mss: int) -> None:
        """RFC 1191 §6.3, RFC 8201 §5.2: a smaller path MTU takes effect at once; what was sent too large goes
        again in smaller segments. This is not congestion, so the window is left alone."""
        if 64 <= mss < self.eff_mss:
            self.eff_mss = mss
            self.board.resegment(mss)

    # -- timers ---------------------------------------------------------------------------------------------

    def on_retransmit_timeout(self, now: float, handshake: bool) -> None:
        """RFC 6298 (5.4)-(5.6), RFC 5681 (4), RFC 6675 §5.1: back off, presume everything in flight lost,
        restart from one segment."""
        self.retransmit_at = None
        self.timeout_at = now
        if self.rtx_since is None:
            self.rtx_since = now
        self.timeouts += 1
        self.rto_count += 1
        self.rtt.on_timeout()
        self.timed_end = None
        if handshake:
            self.syn_due = True
            self.syn_retransmitted = True
            return
        self.cc.on_timeout(self.outstanding, now)
        # SACK marks survive one timeout; a second in a row without progress suggests the receiver reneged.
        self.board.mark_all_lost(keep_sacked=self.timeouts < 2)
        self.state = LOSS
        self.recovery_point = self.nxt_off
        self.reno_sacked = self.dupacks = 0
        self.tlp_at = self.rack_at = self.tlp_end = None
        self.tlp_due = False

    def on_tlp_timeout(self, now: float) -> None:
        self.tlp_at = None
        if self.state is OPEN and self.outstanding > 0:
            self.tlp_due = True
            self.tlp_probes += 1
            self.retransmit_at = now + self.rtt.rto  # RFC 8985 §7.3: the RTO follows the probe

    def on_rack_timeout(self, now: float) -> None:
        self.rack_at = None
        self._detect_losses(0, now)

    def arm_persist(self, now: float) -> None:
        """RFC 9293 §3.8.6.1 (MUST-35..37, SHLD-29, SHLD-30): probe a closed window, backing off."""
        if self.persist_at is None and self.outstanding == 0:
            self.persist_at = now + min(self.rtt.rto * (1 << self.persist_backoff), self.rtt.rto_max)

    def on_persist_timeout(self) -> None:
        self.persist_at = None
        self.window_probes += 1
        if self.persist_backoff < 16:
            self.persist_backoff += 1
