"""CUBIC congestion control (RFC 9438), with HyStart++ (RFC 9406) ending the initial slow start.

``cwnd`` and ``ssthresh`` are bytes, as for every algorithm here; the RFC's own quantities (``w_max``,
``cwnd_prior``, ``cwnd_epoch``, ``w_est``, W_cubic) are floats in segments of SMSS and times are seconds of the
caller's clock, so the formulas read as in the RFC. Fractions of a byte of growth are carried over, never lost.

Which RTT: W_cubic(t + RTT) uses ``srtt``, smoothed from the ACKs' samples with RFC 6298's gain of 1/8, since
RFC 9438 §4.2 names "the smoothed round-trip time"; HyStart++ uses the per-round minimum of the raw samples.
Before the first sample, congestion avoidance grows as Reno does (RFC 5681, one SMSS per cwnd acknowledged).

When the window may grow (RFC 9438 §5.8: "CUBIC does not increase its congestion window if a flow is
application limited."): in slow start while at least half of cwnd was in flight (Linux tcp_is_cwnd_limited: slow
start may take cwnd to twice what the sender actually used); in congestion avoidance only while the flight left
no room for another full-sized segment. ``flight`` is what was outstanding before the ACK, so it tells whether
the sender was cwnd-limited during the interval the ACK closes.
"""

import math

from ..seq import seq_ge

C = 0.4  # RFC 9438 §5.1: "Therefore, C SHOULD be set to 0.4."
BETA_CUBIC = 0.7  # RFC 9438 §4.6: "The parameter β_cubic SHOULD be set to 0.7"
ALPHA_CUBIC = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)  # RFC 9438 §4.3: α_cubic = 3 * (1 - β_cubic) / (1 + β_cubic)

# RFC 9406 §4.3: "It is RECOMMENDED that a HyStart++ implementation use the following constants".
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5
L = 8  # RFC 9406 §4.3: "L = infinity if paced, L = 8 if non-paced"; we do not pace.
ABC_L = 2  # RFC 3465 §2.2's L = 2*SMSS for the standard slow starts after the first, as in Reno.

INF = math.inf


def cubic_k(w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 §4.2, Figure 2: K = cubic_root((W_max - cwnd_epoch) / C), in seconds. Negative when fast
    convergence left W_max below cwnd_epoch: the curve still passes through cwnd_epoch at t = 0."""
    return math.cbrt((w_max - cwnd_epoch) / C)


def w_cubic(t: float, k: float, w_max: float) -> float:
    """RFC 9438 §4.2, Figure 1: W_cubic(t) = C * (t - K)^3 + W_max, in segments."""
    return C * (t - k) ** 3 + w_max


class Cubic:
    """RFC 9438 CUBIC over the sender's loss recovery, HyStart++ (RFC 9406) for the initial slow start."""

    name = "cubic"
    __slots__ = (
        *("cwnd", "ssthresh", "smss", "fast_convergence", "srtt", "_frac", "_last_ack_at", "_reduced"),
        *("w_max", "cwnd_prior", "t_epoch", "cwnd_epoch", "k", "w_est"),  # RFC 9438 §4.1.2
        *("hystart", "window_end", "last_round_min_rtt", "current_round_min_rtt", "rtt_sample_count"),  # RFC 9406
        *("css_baseline_min_rtt", "css_round_count"),
    )

    def __init__(self, smss: int, initial_window_segments: int, *, fast_convergence: bool = True) -> None:
        # Imported here, not at the top: congestion.py imports this module to register it.
        from .congestion import initial_window

        self.smss = smss
        self.cwnd = initial_window(smss, initial_window_segments)
        # RFC 5681 (3.1): "The initial value of ssthresh SHOULD be set arbitrarily high".
        self.ssthresh = 1 << 30
        # RFC 9438 §4.7: "the following fast convergence mechanism SHOULD be implemented." It also says it
        # "SHOULD be disabled" for a lone flow, which a sender cannot know; Linux enables it, and so do we.
        self.fast_convergence = fast_convergence
        self.w_max: float | None = None  # None: undefined (§4.8, §4.10); the next epoch starts with K = 0
        self.cwnd_prior: float | None = None
        self.t_epoch: float | None = None  # None: no congestion avoidance stage under way
        self.cwnd_epoch = 0.0
        self.k = 0.0
        self.w_est = 0.0
        self.srtt: float | None = None
        # HyStart++ (RFC 9406 §4.2): "lastRoundMinRTT = infinity", "currentRoundMinRTT = infinity".
        self.hystart = True
        self.window_end: int | None = None
        self.last_round_min_rtt = INF
        self.current_round_min_rtt = INF
        self.rtt_sample_count = 0
        self.css_baseline_min_rtt = INF  # finite while in Conservative Slow Start
        self.css_round_count = 0
        self._frac = 0.0  # bytes of growth earned but not yet a whole byte of cwnd
        self._last_ack_at: float | None = None
        self._reduced = False  # ssthresh already cut for the loss episode under way

    @property
    def in_css(self) -> bool:
        return self.css_baseline_min_rtt != INF

    def on_ack(self, acked: int, flight: int, now: float, rtt: float | None, snd_una: int, snd_nxt: int) -> None:
        if rtt is not None and rtt >= 0:
            # RFC 6298 (2.2), (2.3): SRTT <- R, then SRTT <- (1 - 1/8) * SRTT + 1/8 * R'.
            self.srtt = rtt if self.srtt is None else self.srtt + (rtt - self.srtt) / 8
        gap = 0.0 if self._last_ack_at is None else max(now - self._last_ack_at, 0.0)
        self._last_ack_at = now
        self._reduced = False  # new data delivered outside recovery: the loss episode is over
        if acked <= 0:
            return
        if self.cwnd < self.ssthresh:
            self._slow_start(acked, flight, rtt, snd_una, snd_nxt)
        else:
            self._congestion_avoidance(acked, flight, now, gap)

    def on_congestion_event(self, flight: int, now: float) -> None:
        self._end_hystart()
        self._reset_epoch()
        if self._reduced:
            return  # one reduction per loss: a timeout already cut ssthresh for this one (see on_timeout)
        self._reduced = True
        cwnd = self.cwnd / self.smss
        # RFC 9438 §4.7: W_max = cwnd * (1 + β_cubic) / 2 "if cwnd < W_max and fast convergence enabled,
        # further reduce W_max"; otherwise "remember cwnd before reduction".
        if self.fast_convergence and self.w_max is not None and cwnd < self.w_max:
            self.w_max = cwnd * (1 + BETA_CUBIC) / 2
        else:
            self.w_max = cwnd
        # RFC 9438 §4.1.2: cwnd_prior is cwnd "just before cwnd was reduced in the last congestion event".
        self.cwnd_prior = cwnd
        self.ssthresh = self._reduced_ssthresh()

    def on_recovery_end(self, now: float) -> None:
        self.cwnd = self.ssthresh
        self._reset_epoch()
        self._reduced = False

    def on_timeout(self, flight: int, now: float) -> None:
        self._end_hystart()
        # RFC 9438 §4.8: "In the case of a timeout, CUBIC follows Reno to reduce cwnd [RFC5681] but sets
        # ssthresh using β_cubic (same as in Section 4.6)". A timeout inside recovery, or a repeat before any
        # new data is acknowledged, keeps the ssthresh already chosen for this loss (as Linux tcp_enter_loss
        # does): recomputing it from the 1-SMSS loss window would collapse it to 2 SMSS.
        if not self._reduced:
            self._reduced = True
            self.cwnd_prior = self.cwnd / self.smss
            self.ssthresh = self._reduced_ssthresh()
        # RFC 9438 §4.8: "During the first congestion avoidance stage after a timeout, CUBIC increases its
        # congestion window size using Figure 1, where t is the elapsed time since the beginning of the current
        # congestion avoidance stage, K is set to 0, and W_max is set to the congestion window size at the
        # beginning of the current congestion avoidance stage."
        self.w_max = None
        self.cwnd = self.smss  # RFC 5681 (4): the loss window, 1 SMSS
        self._reset_epoch()

    # -- slow start and HyStart++ ---------------------------------------------------------------------------

    def _slow_start(self, acked: int, flight: int, rtt: float | None, snd_una: int, snd_nxt: int) -> None:
        cwnd_limited = 2 * flight >= self.cwnd
        if not self.hystart:
            if cwnd_limited:
                self._grow(min(acked, ABC_L * self.smss))
                self._cap_at_ssthresh()
            return
        # RFC 9406 §4.2: "Define windowEnd as a sequence number initialized to SND.NXT."
        if self.window_end is None:
            self.window_end = snd_nxt
        if cwnd_limited:
            # RFC 9406 §4.2, slow start: "cwnd = cwnd + min(N, L * SMSS)"; in CSS:
            # "cwnd = cwnd + (min(N, L * SMSS) / CSS_GROWTH_DIVISOR)".
            n = min(acked, L * self.smss)
            self._grow(n / CSS_GROWTH_DIVISOR if self.in_css else n)
            self._cap_at_ssthresh()
        if rtt is not None and rtt >= 0:
            # RFC 9406 §4.2: "currentRoundMinRTT = min(currentRoundMinRTT, currRTT)", "rttSampleCount += 1".
            self.current_round_min_rtt = min(self.current_round_min_rtt, rtt)
            self.rtt_sample_count += 1
        current, last = self.current_round_min_rtt, self.last_round_min_rtt
        if self.rtt_sample_count >= N_RTT_SAMPLE and current != INF:
            if self.in_css:
                # RFC 9406 §4.2: "For CSS rounds where at least N_RTT_SAMPLE RTT samples have been obtained,
                # check to see if the current round's minRTT drops below baseline (cssBaselineMinRtt)
                # indicating that slow start exit was spurious" -> "resume slow start including HyStart++".
                if current < self.css_baseline_min_rtt:
                    self.css_baseline_min_rtt = INF
                    self.css_round_count = 0
            elif last != INF:
                # RFC 9406 §4.2: "RttThresh = max(MIN_RTT_THRESH, min(lastRoundMinRTT / MIN_RTT_DIVISOR,
                # MAX_RTT_THRESH))"; "if (currentRoundMinRTT >= (lastRoundMinRTT + RttThresh))
                # cssBaselineMinRtt = currentRoundMinRTT; exit slow start and enter CSS".
                rtt_thresh = max(MIN_RTT_THRESH, min(last / MIN_RTT_DIVISOR, MAX_RTT_THRESH))
                if current >= last + rtt_thresh:
                    self.css_baseline_min_rtt = current
                    self.css_round_count = 0
        # RFC 9406 §4.2: "When windowEnd is ACKed, the current round ends and windowEnd is set to SND.NXT."
        if not seq_ge(snd_una, self.window_end):
            return
        if self.in_css:
            # RFC 9406 §4.2: "CSS lasts at most CSS_ROUNDS rounds. If the transition into CSS happens in the
            # middle of a round, that partial round counts towards the limit."
            self.css_round_count += 1
            if self.css_round_count >= CSS_ROUNDS:
                self._exit_slow_start()
                return
        # RFC 9406 §4.2: "lastRoundMinRTT = currentRoundMinRTT", "currentRoundMinRTT = infinity",
        # "rttSampleCount = 0".
        self.last_round_min_rtt = self.current_round_min_rtt
        self.current_round_min_rtt = INF
        self.rtt_sample_count = 0
        self.window_end = snd_nxt

    def _exit_slow_start(self) -> None:
        # RFC 9406 §4.2: "If CSS_ROUNDS rounds are complete, enter congestion avoidance by setting the ssthresh
        # to the current cwnd." (Never below RFC 5681's 2 SMSS floor, should cwnd have been cut to one.)
        self.ssthresh = max(self.cwnd, 2 * self.smss)
        # RFC 9438 §4.10: W_max is undefined here. "In this special case, CUBIC sets cwnd_prior = cwnd and
        # switches to congestion avoidance."; K = 0 and W_max = cwnd_epoch when the stage begins.
        self.cwnd_prior = self.cwnd / self.smss
        self.w_max = None
        self._end_hystart()
        self._reset_epoch()

    def _end_hystart(self) -> None:
        # RFC 9406 §4.3: "An implementation SHOULD use HyStart++ only for the initial slow start (when the
        # ssthresh is at its initial value of arbitrarily high per [RFC5681]) and fall back to using standard
        # slow start for the remainder of the connection lifetime."
        self.hystart = False
        self.window_end = None
        self.css_baseline_min_rtt = INF
        self.css_round_count = 0

    # -- congestion avoidance ------------------------------------------------------------------------------

    def _congestion_avoidance(self, acked: int, flight: int, now: float, gap: float) -> None:
        # RFC 9438 §4.6: "Implementations that use cwnd MUST use other measures to prevent cwnd from growing
        # when the volume of bytes in flight is smaller than cwnd."
        cwnd_limited = flight + self.smss > self.cwnd
        if self.t_epoch is None:
            if not cwnd_limited:
                return
            self._start_epoch(now)
        else:
            # RFC 9438 §4.2: "The elapsed time t in Figure 1 MUST NOT include periods during which cwnd has not
            # been updated due to application-limited behavior". The interval this ACK closes counts only if
            # the sender was cwnd-limited in it, and then at most one srtt: a cwnd-limited flow is ACKed at
            # least once a round trip, so a longer gap was the sender sitting idle.
            counted = gap if cwnd_limited else 0.0
            if self.srtt is not None:
                counted = min(counted, self.srtt)
            self.t_epoch += gap - counted
        if not cwnd_limited:
            return
        smss = self.smss
        cwnd = self.cwnd / smss
        # RFC 9438 §4.3: "Once W_est has grown to reach the cwnd at the time of most recently setting ssthresh
        # -- that is, W_est >= cwnd_prior -- the sender SHOULD set α_cubic to 1".
        alpha = 1.0 if self.cwnd_prior is None or self.w_est >= self.cwnd_prior else ALPHA_CUBIC
        # RFC 9438 §4.3, Figure 4: W_est = W_est + α_cubic * segments_acked / cwnd.
        self.w_est += alpha * (acked / smss) / cwnd
        if self.srtt is None:
            self._grow(smss * acked / self.cwnd)  # no W_cubic(t + RTT) without an RTT: Reno, RFC 5681 (3)
            return
        t = now - self.t_epoch
        if w_cubic(t, self.k, self.w_max) < self.w_est:
            # RFC 9438 §4.3: "CUBIC checks whether W_cubic(t) is less than W_est. If so, CUBIC is in the
            # Reno-friendly region and cwnd SHOULD be set to W_est at each reception of a new ACK." Never
            # lower: cwnd may have run ahead of W_est on the cubic curve.
            target_bytes = self.w_est * smss
            if target_bytes > self.cwnd + self._frac:
                self.cwnd = int(target_bytes)
                self._frac = target_bytes - self.cwnd
            return
        # RFC 9438 §4.2: "Upon receiving a new ACK during congestion avoidance, CUBIC computes the target
        # congestion window size after the next RTT using Figure 1 as follows, where RTT is the smoothed
        # round-trip time." target is W_cubic(t + RTT) bounded to [cwnd, 1.5 * cwnd].
        target = min(max(w_cubic(t + self.srtt, self.k, self.w_max), cwnd), 1.5 * cwnd)
        # RFC 9438 §4.4, §4.5: "cwnd MUST be incremented by (target - cwnd) / cwnd for each received new ACK".
        # DEVIATION: per SMSS acknowledged rather than per ACK (Linux does the same), so that an ACK covering
        # n segments (delayed or stretch ACKs) earns n increments and cwnd still reaches target in one RTT.
        self._grow((target - cwnd) * smss * acked / self.cwnd)

    def _start_epoch(self, now: float) -> None:
        # RFC 9438 §4.1.2: t_epoch is "The time in seconds at which the current congestion avoidance stage
        # started", cwnd_epoch "The cwnd at the beginning of the current congestion avoidance stage".
        self.t_epoch = now
        self.cwnd_epoch = self.cwnd / self.smss
        # RFC 9438 §4.3: "W_est is set equal to cwnd_epoch at the start of the congestion avoidance stage."
        self.w_est = self.cwnd_epoch
        if self.w_max is None:
            self.w_max = self.cwnd_epoch  # §4.8, §4.10: W_max undefined, so K = 0 at cwnd_epoch
            self.k = 0.0
        else:
            self.k = cubic_k(self.w_max, self.cwnd_epoch)
        self._frac = 0.0

    def _reset_epoch(self) -> None:
        self.t_epoch = None
        self._frac = 0.0

    # -- helpers --------------------------------------------------------------------------------------------

    def _reduced_ssthresh(self) -> int:
        # RFC 9438 §4.6: "ssthresh = flight_size * β_cubic", at least 2 SMSS. DEVIATION, allowed there: "Some
        # implementations of CUBIC currently use cwnd instead of flight_size when calculating a new ssthresh."
        # We do too, since our cwnd never grows while the flight falls short of it (see the module docstring).
        return max(round(self.cwnd * BETA_CUBIC), 2 * self.smss)

    def _grow(self, increase: float) -> None:
        total = self._frac + increase
        whole = int(total)
        self._frac = total - whole
        self.cwnd += whole

    def _cap_at_ssthresh(self) -> None:
        # RFC 5681 §3.1: "The slow start algorithm is used when cwnd < ssthresh"; it stops at ssthresh.
        if self.cwnd > self.ssthresh:
            self.cwnd = self.ssthresh
            self._frac = 0.0
