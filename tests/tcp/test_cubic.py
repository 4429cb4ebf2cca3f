"""CUBIC (RFC 9438) and HyStart++ (RFC 9406), driven by a fake clock and an ideal ACK-clocked path.

Sequence numbers start just below 2**32 so that every round boundary test crosses the wrap.
"""

import math
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.seq import seq_add, seq_sub
from stack.tcp.congestion import ALGORITHMS, Reno, make_congestion_control
from stack.tcp.cubic import (
    ALPHA_CUBIC,
    BETA_CUBIC,
    CSS_GROWTH_DIVISOR,
    CSS_ROUNDS,
    C,
    Cubic,
    cubic_k,
    w_cubic,
)

MSS = 1460
ISN = (1 << 32) - 5 * MSS - 100  # the first round of slow start straddles the wrap


def in_congestion_avoidance(w_max_segments: int, *, fast_convergence: bool = True) -> Cubic:
    """A Cubic whose loss at ``w_max_segments`` has just been recovered: cwnd = ssthresh = 0.7 * W_max."""
    cc = Cubic(MSS, 10, fast_convergence=fast_convergence)
    cc.cwnd = w_max_segments * MSS
    cc.on_congestion_event(cc.cwnd, 0.0)
    cc.on_recovery_end(0.0)
    return cc


class Driver:
    """ACKs arrive evenly, ``acks_per_rtt`` to a round trip, each for 1/``acks_per_rtt`` of cwnd, with the
    sender cwnd-limited throughout (the flight before each ACK is the whole cwnd)."""

    def __init__(self, cc: Cubic, rtt: float | None, acks_per_rtt: int = 20, now: float = 0.0) -> None:
        self.cc, self.rtt, self.acks_per_rtt, self.now = cc, rtt, acks_per_rtt, now
        self.snd_una = ISN

    def run_until(self, t: float, flight: int | None = None) -> None:
        step = (self.rtt or 0.05) / self.acks_per_rtt
        while self.now + step <= t + 1e-12:
            self.now += step
            cwnd = self.cc.cwnd
            acked = max(cwnd // self.acks_per_rtt, 1)
            self.snd_una = seq_add(self.snd_una, acked)
            sent = cwnd if flight is None else flight
            self.cc.on_ack(acked, sent, self.now, self.rtt, self.snd_una, seq_add(self.snd_una, sent))


class Path:
    """An ideal path for slow start: one ACK per segment, one RTT after the segment left; the sender refills
    cwnd after every ACK. Rounds end as in RFC 9406: when the SND.NXT recorded at the last round end is ACKed."""

    def __init__(self, cc: Cubic) -> None:
        self.cc, self.now = cc, 0.0
        self.snd_una = self.snd_nxt = ISN
        self.in_flight: deque[tuple[int, float]] = deque()
        self.fill()
        self.round_end = self.snd_nxt

    def fill(self) -> None:
        while seq_sub(self.snd_nxt, self.snd_una) + MSS <= self.cc.cwnd:
            self.snd_nxt = seq_add(self.snd_nxt, MSS)
            self.in_flight.append((self.snd_nxt, self.now))

    def round(self, rtt: float) -> None:
        while True:
            end, sent_at = self.in_flight.popleft()
            self.now = max(self.now, sent_at + rtt)
            flight = seq_sub(self.snd_nxt, self.snd_una)
            self.snd_una = end
            self.cc.on_ack(MSS, flight, self.now, rtt, self.snd_una, self.snd_nxt)
            done = self.snd_una == self.round_end
            if done:
                self.round_end = self.snd_nxt
            self.fill()
            if done:
                return


# -- the formulas ---------------------------------------------------------------------------------------------


def test_k_is_the_cube_root_of_the_window_to_regain_over_c():
    # W_max = 100, cwnd_epoch = 70: K = cbrt(30 / 0.4) = cbrt(75) = 4.2172 s (4.2172**3 = 75.0).
    assert cubic_k(100, 70) == pytest.approx(4.2172, abs=1e-4)
    # W_max = 10, cwnd_epoch = 7 (the 0.7 decrease of a 10-segment window): cbrt(7.5) = 1.9574 s.
    assert cubic_k(10, 7) == pytest.approx(1.9574, abs=1e-4)
    assert cubic_k(50, 50) == 0.0
    # Fast convergence can leave W_max below cwnd_epoch: K is negative, the curve is already convex.
    assert cubic_k(70, 100) == pytest.approx(-4.2172, abs=1e-4)


def test_w_cubic_starts_at_cwnd_epoch_plateaus_at_w_max_at_k_and_grows_by_c_t_cubed_after():
    k = cubic_k(100, 70)
    assert w_cubic(0.0, k, 100) == pytest.approx(70)  # 0.4 * (-K)^3 + 100 = -30 + 100
    assert w_cubic(k, k, 100) == pytest.approx(100)
    assert w_cubic(k + 1, k, 100) == pytest.approx(100.4)  # 0.4 * 1^3
    assert w_cubic(k + 2, k, 100) == pytest.approx(103.2)  # 0.4 * 2^3
    assert w_cubic(k - 2, k, 100) == pytest.approx(96.8)


def test_constants_are_the_rfcs():
    assert (C, BETA_CUBIC) == (0.4, 0.7)
    assert pytest.approx(0.5294, abs=1e-4) == ALPHA_CUBIC  # 3 * 0.3 / 1.7
    assert (CSS_GROWTH_DIVISOR, CSS_ROUNDS) == (4, 5)


# -- the registry and the interface ---------------------------------------------------------------------------


def test_cubic_is_chosen_by_name():
    cc = make_congestion_control("cubic", 1460, 10)
    assert isinstance(cc, Cubic)
    assert ALGORITHMS["cubic"] is Cubic
    assert cc.name == "cubic"
    assert cc.cwnd == 14600 and cc.ssthresh >= 1 << 30  # RFC 6928 IW10; ssthresh "arbitrarily high"
    assert not hasattr(cc, "__dict__")  # __slots__, like Reno


# -- multiplicative decrease, fast convergence, recovery, timeout -------------------------------------------


def test_congestion_event_sets_ssthresh_to_beta_times_cwnd_and_leaves_cwnd_to_the_sender():
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_congestion_event(80 * MSS, 1.0)
    assert cc.ssthresh == 70 * MSS
    assert cc.cwnd == 100 * MSS  # PRR walks it down
    assert cc.w_max == 100 and cc.cwnd_prior == 100


def test_ssthresh_never_falls_below_two_segments():
    cc = Cubic(MSS, 1)
    cc.cwnd = 2 * MSS
    cc.on_congestion_event(2 * MSS, 0.0)
    assert cc.ssthresh == 2 * MSS


def test_fast_convergence_lowers_w_max_when_the_window_had_not_regained_it():
    cc = in_congestion_avoidance(100)
    cc.cwnd = 80 * MSS  # the next loss comes before cwnd is back at W_max = 100
    cc.on_congestion_event(cc.cwnd, 5.0)
    assert cc.w_max == pytest.approx(80 * (1 + 0.7) / 2)  # 68 segments
    assert cc.cwnd_prior == 80
    assert cc.ssthresh == 56 * MSS


def test_without_fast_convergence_w_max_is_the_window_before_the_reduction():
    cc = in_congestion_avoidance(100, fast_convergence=False)
    cc.cwnd = 80 * MSS
    cc.on_congestion_event(cc.cwnd, 5.0)
    assert cc.w_max == 80


def test_a_loss_above_w_max_remembers_the_new_window():
    cc = in_congestion_avoidance(100)
    cc.cwnd = 120 * MSS
    cc.on_congestion_event(cc.cwnd, 5.0)
    assert cc.w_max == 120


def test_recovery_end_sets_cwnd_to_ssthresh():
    cc = Cubic(MSS, 10)
    cc.cwnd = 50 * MSS
    cc.on_congestion_event(cc.cwnd, 0.0)
    cc.cwnd = 20 * MSS  # wherever PRR left it
    cc.on_recovery_end(0.3)
    assert cc.cwnd == cc.ssthresh == 35 * MSS


def test_timeout_gives_one_segment_and_a_beta_ssthresh_then_k_zero_at_the_next_epoch():
    cc = in_congestion_avoidance(100)  # an earlier loss left W_max = 100, which the timeout must forget
    cc.cwnd = 50 * MSS
    cc.on_timeout(50 * MSS, 1.0)
    assert cc.cwnd == MSS
    assert cc.ssthresh == 35 * MSS
    # Slow start back to ssthresh, then RFC 9438 §4.8: K = 0 and W_max = cwnd_epoch.
    d = Driver(cc, 0.05, now=1.0)
    d.run_until(3.0)
    assert cc.t_epoch is not None
    assert cc.k == 0.0 and cc.w_max == cc.cwnd_epoch == 35


def test_a_second_timeout_before_any_progress_keeps_ssthresh():
    cc = Cubic(MSS, 10)
    cc.cwnd = 50 * MSS
    cc.on_timeout(50 * MSS, 1.0)
    cc.on_timeout(50 * MSS, 2.0)  # backed-off RTO for the same loss: no new data acknowledged
    assert cc.ssthresh == 35 * MSS and cc.cwnd == MSS


def test_a_timeout_during_recovery_keeps_the_ssthresh_of_that_recovery():
    cc = Cubic(MSS, 10)
    cc.cwnd = 50 * MSS
    cc.on_congestion_event(50 * MSS, 1.0)
    cc.cwnd = 30 * MSS  # PRR on its way down
    cc.on_timeout(30 * MSS, 2.0)
    assert cc.ssthresh == 35 * MSS and cc.cwnd == MSS


# -- congestion avoidance: the curve ----------------------------------------------------------------------


def test_window_is_concave_up_to_w_max_at_k_then_convex_beyond():
    """W_max = 1000 segments at 50 ms: a large BDP, where the cubic curve, not Reno, sets the pace."""
    cc = in_congestion_avoidance(1000)
    assert cc.cwnd == 700 * MSS
    d = Driver(cc, 0.05)
    d.run_until(0.05)
    start = cc.t_epoch
    assert cc.k == pytest.approx(cubic_k(1000, 700))  # cbrt(750) = 9.086 s
    k = cc.k

    def cwnd_at(t):
        d.run_until(start + t)
        return cc.cwnd / MSS

    quarter, half, three_quarters, at_k = cwnd_at(k / 4), cwnd_at(k / 2), cwnd_at(3 * k / 4), cwnd_at(k)
    # Concave: fast growth away from the reduction, slowing down towards the plateau.
    assert quarter - 700 > half - quarter > three_quarters - half > at_k - three_quarters > 0
    assert half == pytest.approx(w_cubic(k / 2, k, 1000), rel=0.01)
    assert at_k == pytest.approx(1000, rel=0.01)
    assert at_k < 1000 * 1.01
    # Convex: slow probing past W_max first, then faster and faster.
    after_3, after_6 = cwnd_at(k + 3), cwnd_at(k + 6)
    assert after_3 > 1000
    assert after_6 - after_3 > after_3 - at_k
    assert after_6 == pytest.approx(w_cubic(k + 6, k, 1000), rel=0.01)  # 1000 + 0.4 * 216 = 1086
    assert cc.w_est < w_cubic(k + 6, k, 1000)  # it was the cubic region throughout


def test_target_is_clamped_to_one_and_a_half_cwnd():
    # RFC 9438 §4.2: target is at most 1.5 * cwnd. With W_max far below cwnd_epoch (K = -5.31 s) the curve is
    # steep at once: one second in, W_cubic(t + RTT) = 0.4 * (2 + 5.31)^3 + 10 = 166 segments.
    cc = in_congestion_avoidance(100)
    cc.w_max = 10.0
    una = seq_add(ISN, MSS)
    cc.on_ack(MSS, cc.cwnd, 0.0, 1.0, una, seq_add(una, cc.cwnd))  # starts the epoch (t = 0)
    before = cc.cwnd
    una = seq_add(una, before)
    cc.on_ack(before, before, 1.0, 1.0, una, seq_add(una, before))  # a whole window, one RTT later
    assert w_cubic(1.0 + 1.0, cc.k, 10.0) > 1.5 * before / MSS
    assert cc.cwnd == pytest.approx(1.5 * before, abs=1)  # the target reached, and no further


def test_reno_friendly_region_dominates_at_small_bdp():
    """1 ms RTT and W_max = 20 segments: K = cbrt(15) = 2.47 s = 2466 round trips, so the cubic curve barely
    moves while W_est, and so cwnd, gains α_cubic then 1 segment per round trip."""
    cc = in_congestion_avoidance(20)
    d = Driver(cc, 0.001, acks_per_rtt=14)
    d.run_until(0.001)
    start, k = cc.t_epoch, cc.k
    d.run_until(start + 0.020)
    at_20 = cc.cwnd / MSS
    d.run_until(start + 0.040)  # 40 round trips
    cubic_only = w_cubic(0.040 + 0.001, k, 20)
    assert cubic_only < 14.5
    assert cc.cwnd / MSS > 45
    assert cc.cwnd / MSS == pytest.approx(cc.w_est, abs=1)
    # Past cwnd_prior, α_cubic is 1: one segment per round trip, as Reno.
    assert cc.cwnd / MSS - at_20 == pytest.approx(20, abs=1)
    # α_cubic < 1 until W_est reaches cwnd_prior = 20: about 6 / 0.53 = 11 round trips to get there.
    d2 = Driver(in_congestion_avoidance(20), 0.001, acks_per_rtt=14)
    d2.run_until(0.001)
    d2.run_until(0.001 + 0.005)
    assert d2.cc.cwnd / MSS == pytest.approx(14 + 5 * ALPHA_CUBIC, abs=0.6)


def test_before_any_rtt_sample_congestion_avoidance_grows_like_reno():
    cubic = in_congestion_avoidance(100)
    reno = Reno(MSS, 10)
    reno.cwnd, reno.ssthresh = cubic.cwnd, cubic.ssthresh
    una = ISN
    for _ in range(20 * 30):  # 30 windows, 20 ACKs each, no RTT sample
        for cc in (cubic, reno):
            acked = cc.cwnd // 20
            cc.on_ack(acked, cc.cwnd, 0.0, None, seq_add(una, acked), seq_add(una, acked + cc.cwnd))
        una = seq_add(una, MSS)
    assert cubic.cwnd > 95 * MSS
    assert abs(cubic.cwnd - reno.cwnd) <= MSS


def test_no_growth_while_application_limited_and_the_idle_time_is_not_counted_in_t():
    cc = in_congestion_avoidance(1000)
    d = Driver(cc, 0.05)
    d.run_until(2.0)
    t_before = d.now - cc.t_epoch
    cwnd = cc.cwnd
    d.run_until(12.0, flight=cc.cwnd // 4)  # ten seconds with a quarter of cwnd in flight
    assert cc.cwnd == cwnd
    assert d.now - cc.t_epoch == pytest.approx(t_before)
    d.run_until(12.5)
    assert d.now - cc.t_epoch == pytest.approx(t_before + 0.5)
    assert cc.cwnd > cwnd


def test_an_idle_gap_between_acks_counts_at_most_one_srtt():
    cc = in_congestion_avoidance(1000)
    d = Driver(cc, 0.05)
    d.run_until(2.0)
    t_before = d.now - cc.t_epoch
    d.now += 30.0  # nothing for 30 s, then a full window's ACKs again
    d.run_until(d.now + 0.0025)
    assert d.now - cc.t_epoch == pytest.approx(t_before + 0.05, abs=1e-3)


def test_fractions_of_a_byte_accumulate_instead_of_being_rounded_away():
    # One ACK of 1 byte grows cwnd by 1460 * 1 / cwnd < 1 byte; 10**5 of them must add up all the same.
    cc = in_congestion_avoidance(100)
    start = cc.cwnd
    una = ISN
    for _ in range(100_000):
        una = seq_add(una, 1)
        cc.on_ack(1, cc.cwnd, 0.0, None, una, seq_add(una, cc.cwnd))
    expected = math.sqrt(start**2 + 2 * MSS * 100_000)  # d(cwnd) = MSS * d(acked) / cwnd, integrated
    assert cc.cwnd == pytest.approx(expected, abs=2)


# -- HyStart++ ------------------------------------------------------------------------------------------------


def test_flat_rtt_slow_start_doubles_every_round_and_never_enters_css():
    cc = Cubic(MSS, 10)
    path = Path(cc)
    delivered = 0
    previous = cc.cwnd
    for _ in range(8):
        una = path.snd_una
        path.round(0.100)
        delivered += seq_sub(path.snd_una, una)
        assert not cc.in_css and cc.hystart
        assert cc.cwnd == 10 * MSS + delivered  # every byte acknowledged grew cwnd by a byte
        assert 1.7 < cc.cwnd / previous <= 2.0
        previous = cc.cwnd
    assert cc.cwnd < cc.ssthresh


def test_rtt_rising_past_the_threshold_enters_css_and_after_css_rounds_ends_slow_start():
    cc = Cubic(MSS, 10)
    path = Path(cc)
    for _ in range(3):
        path.round(0.100)
    # RttThresh = clamp(100 ms / 8, 4 ms, 16 ms) = 12.5 ms: 115 ms is past 112.5 ms.
    path.round(0.115)
    assert cc.in_css and cc.css_baseline_min_rtt == 0.115
    before = cc.cwnd
    una = path.snd_una
    path.round(0.115)
    acked = seq_sub(path.snd_una, una)
    assert cc.cwnd - before == pytest.approx(acked / CSS_GROWTH_DIVISOR, abs=1)
    for _ in range(CSS_ROUNDS - 2):  # the round CSS began in counts as the first
        assert cc.in_css and cc.cwnd < cc.ssthresh
        path.round(0.115)
    assert not cc.hystart and not cc.in_css
    assert cc.ssthresh == cc.cwnd  # RFC 9406 §4.2: "setting the ssthresh to the current cwnd"
    assert cc.cwnd_prior == cc.cwnd / MSS and cc.w_max is None
    path.round(0.115)
    assert cc.k == 0.0 and cc.w_max == cc.cwnd_epoch  # RFC 9438 §4.10


def test_rtt_just_below_the_threshold_stays_in_slow_start():
    cc = Cubic(MSS, 10)
    path = Path(cc)
    for _ in range(3):
        path.round(0.100)
    path.round(0.112)  # 12 ms more, under the 12.5 ms threshold
    assert not cc.in_css


def test_css_growth_is_a_quarter_of_slow_starts():
    cc = Cubic(MSS, 10)
    path = Path(cc)
    for _ in range(3):
        path.round(0.100)
    path.round(0.120)
    assert cc.in_css
    before = cc.cwnd
    cc.on_ack(MSS, cc.cwnd, path.now, 0.120, path.snd_una, path.snd_nxt)
    assert cc.cwnd - before == MSS // CSS_GROWTH_DIVISOR


def test_rtt_falling_back_below_the_baseline_during_css_resumes_slow_start():
    cc = Cubic(MSS, 10)
    path = Path(cc)
    for _ in range(3):
        path.round(0.100)
    path.round(0.120)
    assert cc.in_css
    path.round(0.100)  # the exit was spurious: jitter, not a queue
    assert not cc.in_css and cc.hystart
    before = cc.cwnd
    cc.on_ack(MSS, cc.cwnd, path.now, 0.100, path.snd_una, path.snd_nxt)
    assert cc.cwnd - before == MSS  # full slow-start growth again
    for _ in range(CSS_ROUNDS + 1):
        path.round(0.100)
    assert cc.hystart and cc.cwnd < cc.ssthresh


def ack_rounds(cc: Cubic, rounds: list[tuple[int, float]]):
    """Rounds of ``n`` one-segment ACKs at ``rtt`` each, every round ending exactly at the windowEnd that
    HyStart++ recorded; yields after each ACK."""
    una, now = ISN, 0.0
    nxt = seq_add(una, rounds[0][0] * MSS)
    for i, (n, rtt) in enumerate(rounds):
        nxt_next = seq_add(nxt, rounds[i + 1][0] * MSS) if i + 1 < len(rounds) else nxt
        for j in range(n):
            now += rtt / n
            una = seq_add(una, MSS)
            cc.on_ack(MSS, cc.cwnd, now, rtt, una, nxt if j < n - 1 else nxt_next)
            yield
        nxt = nxt_next


def test_the_rtt_test_waits_for_n_rtt_sample_samples_in_the_round():
    cc = Cubic(MSS, 10)
    steps = ack_rounds(cc, [(7, 0.100), (8, 0.200)])
    for _ in range(7 + 7):
        next(steps)
        assert not cc.in_css
    next(steps)  # the eighth sample of the slow round
    assert cc.in_css and cc.css_baseline_min_rtt == 0.200


def test_a_round_with_fewer_than_n_rtt_sample_samples_cannot_enter_css():
    cc = Cubic(MSS, 10)
    for _ in ack_rounds(cc, [(8, 0.100), (7, 0.200), (8, 0.200)]):
        pass
    # The seven-sample round was never judged; the next one is compared with it, not with the fast one.
    assert not cc.in_css


def test_loss_ends_hystart_for_good():
    cc = Cubic(MSS, 10)
    path = Path(cc)
    path.round(0.100)
    cc.on_congestion_event(cc.cwnd, path.now)
    cc.on_recovery_end(path.now)
    assert not cc.hystart
    cc.on_timeout(cc.cwnd, path.now + 1)
    # The slow start after a timeout is the standard one, with RFC 3465's L = 2 and no RTT test.
    before = cc.cwnd
    cc.on_ack(10 * MSS, cc.cwnd, path.now + 2, 0.5, seq_add(path.snd_una, 10 * MSS), path.snd_nxt)
    assert cc.cwnd - before == 2 * MSS
    assert not cc.in_css


def test_slow_start_does_not_grow_when_less_than_half_the_window_is_in_flight():
    cc = Cubic(MSS, 10)
    cc.on_ack(MSS, 4 * MSS, 0.1, 0.1, seq_add(ISN, MSS), seq_add(ISN, 5 * MSS))
    assert cc.cwnd == 10 * MSS
    cc.on_ack(MSS, 5 * MSS, 0.2, 0.1, seq_add(ISN, 2 * MSS), seq_add(ISN, 6 * MSS))
    assert cc.cwnd == 11 * MSS


# -- the property ---------------------------------------------------------------------------------------------

calls = st.lists(
    st.one_of(
        st.tuples(
            st.just("ack"),
            st.integers(1, 200_000),  # acked
            st.integers(0, 2_000_000),  # flight
            st.floats(0, 3.0),  # time since the previous call
            st.none() | st.floats(0, 2.0),  # RTT sample
        ),
        st.tuples(st.just("loss"), st.integers(0, 2_000_000), st.floats(0, 3.0)),
        st.tuples(st.just("recovery_end"), st.floats(0, 3.0)),
        st.tuples(st.just("timeout"), st.integers(0, 2_000_000), st.floats(0, 3.0)),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(536, 9000), st.integers(1, 10), st.booleans(), calls)
def test_any_sequence_of_calls_keeps_cwnd_and_ssthresh_sane(smss, iw, fast_convergence, script):
    cc = Cubic(smss, iw, fast_convergence=fast_convergence)
    now, una = 0.0, ISN
    decreased = False
    for call in script:
        kind, dt = call[0], call[-1] if call[0] != "ack" else call[3]
        now += dt
        if kind == "ack":
            _, acked, flight, _, rtt = call
            una = seq_add(una, acked)
            cc.on_ack(acked, flight, now, rtt, una, seq_add(una, flight))
        elif kind == "loss":
            cc.on_congestion_event(call[1], now)
            decreased = True
        elif kind == "recovery_end":
            cc.on_recovery_end(now)
        else:
            cc.on_timeout(call[1], now)
            decreased = True
            assert cc.cwnd == smss
        assert type(cc.cwnd) is int and type(cc.ssthresh) is int
        assert cc.cwnd >= smss and cc.ssthresh > 0
        if decreased:
            assert cc.ssthresh >= 2 * smss
