"""The SACK scoreboard (RFC 6675 §3) against a reference model, and RACK-TLP loss detection (RFC 8985).

The model keeps every segment as sent and derives each byte's state from it: cumulatively acknowledged (below
SND.UNA), SACKed, presumed lost, retransmitted, or simply outstanding. Like the real scoreboard it marks a
segment SACKed only when one block covers all of what is left of it (a receiver SACKs the segments it got);
"acknowledged by SACK" below means exactly that. ``mark_all_lost(keep_sacked=False)`` discards the SACK
information first (the receiver may have reneged, RFC 2018 §8), so those bytes are no longer acknowledged when
they are marked lost.
"""

import itertools
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stack.tcp.rack import DUP_THRESH, REO_WND_MULT_MAX, REO_WND_PERSIST, WORST_CASE_DELAYED_ACK, Rack, probe_timeout
from stack.tcp.scoreboard import Scoreboard, Sent

MSS = 1000


class ModelSegment:
    __slots__ = ("end", "fin", "lost", "retransmitted", "sacked", "start", "xmit_order", "xmit_time")

    def __init__(self, start: int, end: int, fin: bool, now: float, order: int) -> None:
        self.start, self.end, self.fin = start, end, fin
        self.sacked = self.lost = self.retransmitted = False
        self.xmit_time, self.xmit_order = now, order


class ReferenceScoreboard:
    """RFC 6675's scoreboard kept the simple way: every segment ever sent, nothing removed, states per byte."""

    def __init__(self) -> None:
        self.segments: list[ModelSegment] = []
        self.una = 0  # cumulative ACK
        self.nxt = 0  # highest offset sent
        self.fin_sent = False
        self.transmissions = 0

    def live(self) -> list[ModelSegment]:
        return [s for s in self.segments if s.end > self.una]

    def left(self, seg: ModelSegment) -> int:
        """Where what is left of ``seg`` begins (a cumulative ACK may have cut into it)."""
        return max(seg.start, self.una)

    def byte_state(self, offset: int) -> str:
        assert 0 <= offset < self.nxt
        if offset < self.una:
            return "acked"
        seg = next(s for s in self.segments if s.start <= offset < s.end)
        return "sacked" if seg.sacked else "lost" if seg.lost else "outstanding"

    @property
    def sacked_bytes(self) -> int:
        return sum(s.end - self.left(s) for s in self.live() if s.sacked)

    @property
    def lost_bytes(self) -> int:
        return sum(s.end - self.left(s) for s in self.live() if s.lost)

    def send(self, length: int, fin: bool, now: float) -> ModelSegment:
        self.transmissions += 1
        seg = ModelSegment(self.nxt, self.nxt + length + fin, fin, now, self.transmissions)
        self.segments.append(seg)
        self.nxt = seg.end
        self.fin_sent = fin
        return seg

    def cumulative_ack(self, offset: int) -> None:
        assert self.una <= offset <= self.nxt
        self.una = offset

    def sack(self, start: int, end: int) -> None:
        for seg in self.live():
            if start <= self.left(seg) and seg.end <= end:
                seg.sacked, seg.lost = True, False

    def mark_lost(self, seg: ModelSegment) -> None:
        if not seg.sacked:
            seg.lost = True

    def mark_all_lost(self, keep_sacked: bool) -> None:
        for seg in self.live():
            if not keep_sacked:
                seg.sacked = False
            if not seg.sacked:
                seg.lost = True

    def first_lost(self) -> ModelSegment | None:
        return next((s for s in self.live() if s.lost), None)

    def retransmitted(self, seg: ModelSegment, now: float) -> None:
        self.transmissions += 1
        seg.lost, seg.retransmitted = False, True
        seg.xmit_time, seg.xmit_order = now, self.transmissions


def check_against_model(board: Scoreboard, model: ReferenceScoreboard) -> None:
    records = list(board)
    live = model.live()
    assert board.sacked_bytes == model.sacked_bytes
    assert board.lost_bytes == model.lost_bytes
    assert len(board) == len(records) == len(live)
    assert board.first is (records[0] if records else None)
    assert board.last is (records[-1] if records else None)
    # Sorted, contiguous, nothing below the cumulative ACK, nothing beyond what was sent.
    expected_start = model.una
    for record, seg in zip(records, live):
        assert record.start == expected_start == model.left(seg)
        assert record.end == seg.end > record.start
        expected_start = record.end
        assert (record.fin, record.sacked, record.lost, record.retransmitted) == (
            seg.fin,
            seg.sacked,
            seg.lost,
            seg.retransmitted,
        )
        assert record.xmit_time == seg.xmit_time
        assert not (record.sacked and record.lost), f"{record} both SACKed and lost"
        if record.lost:
            # The property from the issue: no byte acknowledged, cumulatively or by SACK, is presumed lost.
            assert model.byte_state(record.start) == model.byte_state(record.end - 1) == "lost"
    assert expected_start == (model.nxt if live else model.una)
    # RFC 6675 NextSeg (1): the lowest lost segment.
    first_lost = board.first_lost()
    expected_first_lost = model.first_lost()
    if expected_first_lost is None:
        assert first_lost is None
    else:
        assert first_lost is not None and first_lost.end == expected_first_lost.end
    # Transmission order: exactly the records in flight (not SACKed, not lost), each once, oldest first.
    in_flight = list(board.by_transmission())
    assert len({id(r) for r in in_flight}) == len(in_flight)
    assert all(not r.sacked and not r.lost and r.end > model.una for r in in_flight)
    assert all(a.xmit_time <= b.xmit_time for a, b in itertools.pairwise(in_flight))
    expected = sorted((s for s in live if not s.sacked and not s.lost), key=lambda s: s.xmit_order)
    assert [r.end for r in in_flight] == [s.end for s in expected]


def pick(n: int, choice: int) -> int:
    return choice % n


def run_scoreboard_ops(ops) -> None:
    board, model = Scoreboard(), ReferenceScoreboard()
    records: dict[int, Sent] = {}  # by end offset (ends never change)
    now = 0.0
    for op in ops:
        kind = op[0]
        if kind == "send":
            _, length, fin, dt = op
            if model.fin_sent:
                continue
            now += dt
            seg = model.send(length, fin, now)
            records[seg.end] = board.sent(seg.start, seg.end, seg.fin, now)
        elif kind == "ack":
            offset = model.una + pick(model.nxt - model.una + 1, op[1])
            delivered = board.cumulative_ack(offset)
            newly = [s for s in model.live() if s.end <= offset and not s.sacked]
            assert [r.end for r in delivered] == [s.end for s in newly]
            model.cumulative_ack(offset)
        elif kind == "sack":
            _, a, b, on_edges = op
            if model.una == model.nxt:
                continue
            if on_edges:
                # Blocks that start and end on segment edges, as a receiver's blocks usually do.
                edges = sorted({model.una} | {s.end for s in model.live()})
                i, j = sorted((pick(len(edges), a), pick(len(edges), b)))
                if i == j:
                    continue
                start, end = edges[i], edges[j]
            else:
                start = model.una + pick(model.nxt - model.una, a)
                end = start + 1 + pick(model.nxt - start, b)
            before = {s.end for s in model.live() if s.sacked}
            marked = board.sack(start, end)
            model.sack(start, end)
            assert sorted(r.end for r in marked) == sorted({s.end for s in model.live() if s.sacked} - before)
        elif kind == "lost":
            live = model.live()
            if not live:
                continue
            seg = live[pick(len(live), op[1])]
            changed = board.mark_lost(records[seg.end])
            assert changed == (not seg.sacked and not seg.lost)
            model.mark_lost(seg)
        elif kind == "all_lost":
            board.mark_all_lost(keep_sacked=op[1])
            model.mark_all_lost(keep_sacked=op[1])
        elif kind == "retransmit":
            now += op[1]
            record = board.first_lost()
            if record is not None:
                board.retransmitted(record, now)
                model.retransmitted(next(s for s in model.segments if s.end == record.end), now)
        elif kind == "by_transmission":
            # Draining the generator prunes stale entries; interleave it with the rest.
            list(board.by_transmission())
        check_against_model(board, model)


picks = st.integers(0, 2**16)
scoreboard_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 1500), st.booleans(), st.sampled_from([0.0, 0.001, 0.01])),
        st.tuples(st.just("send"), st.integers(1, 1500), st.just(False), st.just(0.001)),
        st.tuples(st.just("ack"), picks),
        st.tuples(st.just("sack"), picks, picks, st.booleans()),
        st.tuples(st.just("lost"), picks),
        st.tuples(st.just("all_lost"), st.booleans()),
        st.tuples(st.just("retransmit"), st.sampled_from([0.0, 0.002])),
        st.tuples(st.just("by_transmission")),
    ),
    min_size=25,
    max_size=100,
)


@given(scoreboard_ops)
@example(
    [
        ("send", 100, False, 0.0),
        ("send", 100, False, 0.0),
        ("sack", 0, 1, True),  # SACK the first segment; the pruning drops its entry from the front
        ("by_transmission",),
        ("all_lost", False),  # reneging: the SACK is forgotten and the segment presumed lost
        ("retransmit", 0.002),
        ("ack", 150),  # cuts into the second segment
        ("sack", 50, 49, False),
    ]
)
def test_scoreboard_agrees_with_byte_model_and_never_presumes_acknowledged_bytes_lost(ops):
    run_scoreboard_ops(ops)


# -- scoreboard examples ------------------------------------------------------------------------------------


def send_segments(board: Scoreboard, count: int, times=None, size: int = MSS) -> list[Sent]:
    times = times if times is not None else [i / 10 for i in range(count)]
    return [board.sent(i * size, (i + 1) * size, False, times[i]) for i in range(count)]


def test_sack_block_covering_part_of_a_segment_marks_nothing():
    board = Scoreboard()
    first, second = send_segments(board, 2)
    assert board.sack(500, 2000) == [second]
    assert not first.sacked
    assert board.sacked_bytes == 1000
    assert board.sack(0, 999) == []


def test_cumulative_ack_inside_a_segment_trims_it_and_its_byte_counts():
    board = Scoreboard()
    first, second, third = send_segments(board, 3)
    board.mark_lost(first)
    board.sack(1000, 2000)
    assert board.cumulative_ack(400) == []
    assert (first.start, board.lost_bytes) == (400, 600)
    assert board.cumulative_ack(1500) == [first]
    assert (second.start, board.sacked_bytes, board.lost_bytes) == (1500, 500, 0)
    # A block from the new SND.UNA to the segment's end covers what is left of it.
    assert board.sack(1500, 3000) == [third]
    assert board.cumulative_ack(3000) == []  # both were SACKed before: nothing newly delivered
    assert (len(board), board.sacked_bytes, board.first) == (0, 0, None)


def test_mark_lost_refuses_sacked_and_already_lost_segments():
    board = Scoreboard()
    first, second = send_segments(board, 2)
    board.sack(1000, 2000)
    assert board.mark_lost(second) is False
    assert board.mark_lost(first) is True
    assert board.mark_lost(first) is False
    assert (board.lost_bytes, board.sacked_bytes) == (1000, 1000)


def test_rto_keeps_sack_marks_unless_reneging_is_suspected():
    board = Scoreboard()
    first, second, third = send_segments(board, 3)
    board.sack(1000, 2000)
    board.mark_all_lost(keep_sacked=True)
    assert (first.lost, second.lost, second.sacked, third.lost) == (True, False, True, True)
    assert (board.lost_bytes, board.sacked_bytes) == (2000, 1000)
    board.mark_all_lost(keep_sacked=False)
    assert (second.lost, second.sacked) == (True, False)
    assert (board.lost_bytes, board.sacked_bytes) == (3000, 0)


def test_retransmission_moves_a_segment_to_the_back_of_the_transmission_order():
    board = Scoreboard()
    first, second, third = send_segments(board, 3)
    board.mark_lost(first)
    assert list(board.by_transmission()) == [second, third]
    board.retransmitted(board.first_lost(), 1.0)
    assert list(board.by_transmission()) == [second, third, first]
    assert (first.retransmitted, first.lost, board.lost_bytes, board.first_lost()) == (True, False, 0, None)


def test_scoreboard_stays_consistent_after_compacting_thousands_of_acknowledged_segments():
    board, model = Scoreboard(), ReferenceScoreboard()
    for i in range(3000):
        seg = model.send(100, False, i / 1000)
        board.sent(seg.start, seg.end, False, seg.xmit_time)
    for offset in (50, 150_050, 200_000, 250_000):
        board.cumulative_ack(offset)
        model.cumulative_ack(offset)
        check_against_model(board, model)
    board.sack(260_000, 270_000)
    model.sack(260_000, 270_000)
    board.mark_all_lost(keep_sacked=True)
    model.mark_all_lost(keep_sacked=True)
    check_against_model(board, model)
    assert board.first_lost().start == 250_000


def test_mark_lost_refuses_a_segment_already_cumulatively_acknowledged():
    board = Scoreboard()
    send_segments(board, 2)
    (delivered,) = board.cumulative_ack(1000)
    assert board.mark_lost(delivered) is False
    assert board.lost_bytes == 0


# -- RACK (RFC 8985) ----------------------------------------------------------------------------------------


def deliver_by_sack(board: Scoreboard, rack: Rack, record: Sent, now: float, ts_rtt: float | None = None) -> None:
    assert board.sack(record.start, record.end) == [record]
    rack.on_delivered(record, now, ts_rtt)


def test_rfc8985_example_segments_sent_before_the_delivered_one_are_lost_one_rtt_plus_reo_wnd_after_sending():
    board, rack = Scoreboard(), Rack()
    segments = send_segments(board, 5)  # segments 1..5 sent at t = 0, 0.1, ..., 0.4
    deliver_by_sack(board, rack, segments[4], 1.0)
    assert rack.rtt == pytest.approx(0.6)
    assert (rack.xmit_time, rack.end) == (0.4, 5000)
    reo_wnd = rack.reo_wnd(in_recovery=False, sacked_segments=1, srtt=None)
    assert reo_wnd == pytest.approx(0.6 / 4)  # RACK.min_RTT / 4

    def deadline(record):
        # Computed as detect_loss does, so that "now == deadline" is exactly at the deadline.
        return record.xmit_time + rack.rtt + reo_wnd

    # At t = 1.0 segments 1..3 (deadlines 0.75, 0.85, 0.95) are overdue; segment 4 (1.05) is not.
    lost, timer = rack.detect_loss(board, 1.0, reo_wnd)
    assert lost == segments[:3]
    assert timer == pytest.approx(deadline(segments[3]))
    assert all(s.lost for s in segments[:3]) and not segments[3].lost
    assert board.lost_bytes == 3000

    lost, timer = rack.detect_loss(board, deadline(segments[3]) - 1e-9, reo_wnd)
    assert lost == [] and timer == pytest.approx(deadline(segments[3]))
    lost, timer = rack.detect_loss(board, deadline(segments[3]), reo_wnd)
    assert lost == [segments[3]] and timer is None
    assert board.first_lost() is segments[0]


def test_rack_marks_nothing_before_any_delivery_nor_anything_sent_after_the_newest_delivered():
    board, rack = Scoreboard(), Rack()
    segments = send_segments(board, 4)
    assert rack.detect_loss(board, 100.0, 0.0) == ([], None)
    deliver_by_sack(board, rack, segments[1], 0.2)
    lost, timer = rack.detect_loss(board, 100.0, 0.0)
    assert lost == [segments[0]] and timer is None
    assert not segments[2].lost and not segments[3].lost


def test_rack_segments_sent_together_are_ordered_by_sequence():
    # RFC 8985 §6.2 RACK_sent_after: equal transmit times are broken by end sequence.
    board, rack = Scoreboard(), Rack()
    segments = send_segments(board, 4, times=[0.0] * 4)
    deliver_by_sack(board, rack, segments[2], 0.5)
    lost, timer = rack.detect_loss(board, 10.0, 0.0)
    assert lost == segments[:2] and timer is None
    assert not segments[3].lost


def test_rack_marks_a_retransmission_sent_at_the_same_instant_after_new_data():
    board, rack = Scoreboard(), Rack()
    a, b = send_segments(board, 2, times=[0.0, 0.0])
    board.mark_lost(b)
    c = board.sent(2000, 3000, False, 1.0)
    board.sent(3000, 4000, False, 1.0)
    board.retransmitted(b, 1.0)  # e.g. a second ACK processed at the same now revealed the loss of b
    deliver_by_sack(board, rack, c, 2.0)  # RACK = (1.0, 3000): b (1.0, 2000) was sent before it
    lost, _ = rack.detect_loss(board, 10.0, 0.0)
    assert lost == [a, b]


def test_rack_ignores_a_retransmission_acknowledged_sooner_than_min_rtt():
    board, rack = Scoreboard(), Rack()
    first, second, third = send_segments(board, 3)
    deliver_by_sack(board, rack, second, 0.6)  # min_RTT = 0.5
    board.mark_lost(first)
    board.retransmitted(first, 1.0)
    deliver_by_sack(board, rack, first, 1.2)  # 0.2 s: the ACK must be for the original
    assert (rack.xmit_time, rack.end, rack.rtt, rack.min_rtt) == (0.1, 2000, pytest.approx(0.5), pytest.approx(0.5))
    # The same retransmission acknowledged after at least min_RTT is a sample.
    board.retransmitted(third, 2.0)
    deliver_by_sack(board, rack, third, 2.7)
    assert (rack.xmit_time, rack.end, rack.rtt) == (2.0, 3000, pytest.approx(0.7))


def test_rack_takes_a_retransmission_whose_timestamp_echo_is_its_own():
    board, rack = Scoreboard(), Rack()
    first, second = send_segments(board, 2)
    deliver_by_sack(board, rack, second, 0.15)  # min_RTT = 0.05
    board.retransmitted(first, 1.0)
    deliver_by_sack(board, rack, first, 1.1, ts_rtt=0.1)
    assert (rack.xmit_time, rack.end) == (1.0, 1000)


def test_rack_ignores_a_retransmission_whose_timestamp_echo_is_from_the_original():
    board, rack = Scoreboard(), Rack()
    first, second = send_segments(board, 2)
    deliver_by_sack(board, rack, second, 0.15)  # min_RTT = 0.05
    board.retransmitted(first, 1.0)
    # The ACK at t = 1.1 echoes the original's TSval (sent at t = 0): it says nothing of the retransmission.
    deliver_by_sack(board, rack, first, 1.1, ts_rtt=1.1)
    assert (rack.xmit_time, rack.end) == (0.1, 2000)


def test_rack_takes_a_retransmission_whose_own_echo_is_truncated_to_milliseconds():
    board, rack = Scoreboard(), Rack()
    first, second = send_segments(board, 2)
    deliver_by_sack(board, rack, second, 0.15)  # min_RTT = 0.05
    board.retransmitted(first, 1.0004)  # TSval 1000 ms
    deliver_by_sack(board, rack, first, 1.0506, ts_rtt=(1050 - 1000) / 1000)  # TSecr 1000 ms at 1050 ms
    assert (rack.xmit_time, rack.end) == (1.0004, 1000)


def test_rack_sees_reordering_when_an_older_never_retransmitted_segment_arrives_after_a_newer_one():
    board, rack = Scoreboard(), Rack()
    segments = send_segments(board, 5)
    deliver_by_sack(board, rack, segments[4], 0.5)
    assert not rack.reordering_seen
    deliver_by_sack(board, rack, segments[1], 0.55)
    assert rack.reordering_seen


def test_rack_sees_no_reordering_in_order_or_from_a_retransmission():
    board, rack = Scoreboard(), Rack()
    segments = send_segments(board, 4)
    for i, record in enumerate(segments[1:]):
        deliver_by_sack(board, rack, record, 0.5 + i / 10)
    board.retransmitted(segments[0], 1.0)
    deliver_by_sack(board, rack, segments[0], 1.5)  # the retransmission filled the hole: not reordering
    assert not rack.reordering_seen


def test_rack_sees_reordering_within_a_burst_sent_at_one_instant():
    board, rack = Scoreboard(), Rack()
    segments = send_segments(board, 5, times=[0.0] * 5)
    deliver_by_sack(board, rack, segments[4], 0.5)
    deliver_by_sack(board, rack, segments[1], 0.51)
    assert rack.reordering_seen


def test_rack_sees_reordering_of_an_original_delivered_after_a_retransmission_below_it():
    board, rack = Scoreboard(), Rack()
    a, _b, c, d = send_segments(board, 4)  # t = 0, 0.1, 0.2, 0.3
    deliver_by_sack(board, rack, d, 0.4)  # RACK.fack = 4000
    board.retransmitted(a, 0.5)
    deliver_by_sack(board, rack, a, 0.75)  # a sample (0.25 s > min_RTT): RACK is now (0.5, 1000)
    assert (rack.xmit_time, rack.end) == (0.5, 1000)
    deliver_by_sack(board, rack, c, 0.8)  # c (sent at 0.2, ends at 3000 < fack) arrived after d
    assert rack.reordering_seen


def rack_with_min_rtt(min_rtt: float) -> Rack:
    board, rack = Scoreboard(), Rack()
    (record,) = send_segments(board, 1, times=[1.0])
    deliver_by_sack(board, rack, record, 1.0 + min_rtt)
    return rack


def test_reo_wnd_is_zero_before_reordering_in_recovery_or_after_dupthresh_sacks():
    rack = rack_with_min_rtt(0.2)
    assert rack.reo_wnd(in_recovery=True, sacked_segments=0, srtt=1.0) == 0.0
    assert rack.reo_wnd(in_recovery=False, sacked_segments=DUP_THRESH, srtt=1.0) == 0.0
    assert rack.reo_wnd(in_recovery=False, sacked_segments=DUP_THRESH - 1, srtt=1.0) == pytest.approx(0.05)
    rack.reordering_seen = True
    assert rack.reo_wnd(in_recovery=True, sacked_segments=10, srtt=1.0) == pytest.approx(0.05)


def test_reo_wnd_is_capped_by_srtt_and_zero_without_min_rtt():
    rack = rack_with_min_rtt(0.2)
    assert rack.reo_wnd(in_recovery=False, sacked_segments=0, srtt=0.01) == 0.01
    assert rack.reo_wnd(in_recovery=False, sacked_segments=0, srtt=None) == pytest.approx(0.05)
    assert Rack().reo_wnd(in_recovery=False, sacked_segments=0, srtt=1.0) == 0.0


def test_reo_wnd_grows_with_dsack_at_most_once_per_round():
    rack = rack_with_min_rtt(0.2)
    rack.on_dsack(una_offset=0, nxt_offset=5000)
    assert rack.reo_wnd_mult == 2
    assert rack.reo_wnd(in_recovery=False, sacked_segments=0, srtt=1.0) == pytest.approx(0.1)
    rack.on_dsack(una_offset=1000, nxt_offset=6000)  # the same round: SND.UNA has not reached 5000
    rack.on_dsack(una_offset=4999, nxt_offset=7000)
    assert rack.reo_wnd_mult == 2
    rack.on_dsack(una_offset=5000, nxt_offset=9000)  # a new round
    assert rack.reo_wnd_mult == 3
    assert rack.reo_wnd(in_recovery=False, sacked_segments=0, srtt=1.0) == pytest.approx(0.15)
    for una in range(9000, 9000 + 100 * 1000, 1000):
        rack.on_dsack(una_offset=una, nxt_offset=una + 1)
    assert rack.reo_wnd_mult == REO_WND_MULT_MAX


def test_reo_wnd_returns_to_one_step_after_sixteen_recoveries_without_dsack():
    rack = rack_with_min_rtt(0.2)
    rack.on_dsack(una_offset=0, nxt_offset=5000)
    for _ in range(REO_WND_PERSIST - 1):
        rack.on_recovery_end()
    assert rack.reo_wnd_mult == 2
    rack.on_recovery_end()
    assert rack.reo_wnd_mult == 1
    rack.on_recovery_end()
    assert rack.reo_wnd_mult == 1


def test_probe_timeout_is_two_srtt_plus_delayed_ack_allowance_for_one_segment():
    assert probe_timeout(srtt=0.1, flight_segments=3, rto_deadline=None, now=10.0) == pytest.approx(10.2)
    assert probe_timeout(srtt=0.1, flight_segments=1, rto_deadline=None, now=10.0) == pytest.approx(
        10.2 + WORST_CASE_DELAYED_ACK
    )


def test_probe_timeout_is_one_second_without_srtt():
    assert probe_timeout(srtt=None, flight_segments=1, rto_deadline=None, now=5.0) == 6.0
    assert probe_timeout(srtt=None, flight_segments=4, rto_deadline=20.0, now=5.0) == 6.0


def test_probe_timeout_is_never_later_than_the_rto():
    assert probe_timeout(srtt=0.5, flight_segments=2, rto_deadline=10.4, now=10.0) == 10.4
    assert probe_timeout(srtt=None, flight_segments=2, rto_deadline=10.4, now=10.0) == 10.4
    assert probe_timeout(srtt=0.1, flight_segments=2, rto_deadline=10.4, now=10.0) == pytest.approx(10.2)


# -- RACK property ------------------------------------------------------------------------------------------


def sent_after(t1: float, end1: int, t2: float, end2: int) -> bool:
    """RFC 8985 §6.2 RACK_sent_after."""
    return t1 > t2 or (t1 == t2 and end1 > end2)


def run_rack_schedule(ops) -> None:
    board, rack = Scoreboard(), Rack()
    now, nxt = 0.0, 0
    newest: tuple[float, int] | None = None  # (transmit time, end) of the newest segment ever delivered
    delivered: set[int] = set()  # ends of the records delivered (cumulatively or by SACK)

    def delivered_record(record: Sent) -> None:
        nonlocal newest
        delivered.add(record.end)
        if newest is None or sent_after(record.xmit_time, record.end, *newest):
            newest = (record.xmit_time, record.end)
        rack.on_delivered(record, now, None)

    for op in ops:
        kind = op[0]
        in_flight = [r for r in board if not r.sacked]
        if kind == "send":
            _, count, size, dt = op
            now += dt
            for _ in range(count):
                board.sent(nxt, nxt + size, False, now)
                nxt += size
        elif kind == "sack" and in_flight:
            now += op[2]
            record = in_flight[pick(len(in_flight), op[1])]
            assert board.sack(record.start, record.end) == [record]
            delivered_record(record)
        elif kind == "ack" and in_flight:
            now += op[2]
            offset = in_flight[pick(len(in_flight), op[1])].end
            for record in board.cumulative_ack(offset):
                delivered_record(record)
        elif kind == "retransmit":
            now += op[1]
            record = board.first_lost()
            if record is not None:
                board.retransmitted(record, now)
        elif kind == "detect":
            _, dt, reo_choice = op
            now += dt
            reo_wnd = (0.0, 0.01, 0.05, rack.reo_wnd(False, board.sacked_bytes // MSS, None))[reo_choice]
            before = {id(r) for r in board if r.lost}
            lost, timer = rack.detect_loss(board, now, reo_wnd)
            for record in lost:
                assert record.lost and id(record) not in before
                assert not record.sacked and record.end not in delivered
                assert newest is not None and not sent_after(record.xmit_time, record.end, *newest)
                assert not sent_after(record.xmit_time, record.end, rack.xmit_time, rack.end)
            assert {id(r) for r in board if r.lost} == before | {id(r) for r in lost}
            # What is left in flight and sent before RACK's segment is not yet due, and the timer is the
            # earliest of those deadlines (RFC 8985 §6.2 step 5).
            remaining = [
                r.xmit_time + rack.rtt + reo_wnd - now
                for r in board.by_transmission()
                if rack.xmit_time >= 0 and sent_after(rack.xmit_time, rack.end, r.xmit_time, r.end)
            ]
            assert all(x > 0 for x in remaining)
            if remaining:
                assert timer is not None and timer > now
                assert math.isclose(timer, now + min(remaining), rel_tol=0, abs_tol=1e-9)
            else:
                assert timer is None
        # RACK's segment is one delivered (an ambiguous retransmission may leave it behind the newest).
        assert newest is None or not sent_after(rack.xmit_time, rack.end, *newest)


rack_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 4), st.integers(1, 1500), st.sampled_from([0.0, 0.005, 0.02])),
        st.tuples(st.just("sack"), picks, st.sampled_from([0.0, 0.005, 0.05])),
        st.tuples(st.just("ack"), picks, st.sampled_from([0.0, 0.005, 0.05])),
        # Retransmissions may share an instant with earlier sends: detect_loss orders ties by sequence.
        st.tuples(st.just("retransmit"), st.sampled_from([0.0, 0.001, 0.02])),
        st.tuples(st.just("detect"), st.sampled_from([0.0, 0.002, 0.01, 0.05]), st.integers(0, 3)),
    ),
    min_size=25,
    max_size=100,
)


@given(rack_ops)
def test_rack_never_marks_a_delivered_segment_nor_one_sent_after_the_newest_delivered(ops):
    run_rack_schedule(ops)
