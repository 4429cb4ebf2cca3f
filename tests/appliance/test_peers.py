"""One peer's reliable stream of claim batches (appliance/peers.py): epochs that open with a snapshot, a window of
batches in flight, cumulative acknowledgment, go-back-N retransmission on an RFC 6298 timer with Karn's rule,
and what an "I have no state" answer can mean. A manual clock throughout."""

import ipaddress

import pytest

from appliance.control import Op
from appliance.peers import ControlTiming, Liveness, Peer

ADDRESS = ("10.255.0.2", 6080)
TIMING = ControlTiming(initial_rto=0.2, min_rto=0.05, max_rto=1.0, window=64)
BEGIN, END = (Op.SNAPSHOT_BEGIN, None), (Op.SNAPSHOT_END, None)


def key(i: int) -> tuple[bytes, int, bytes, int]:
    return (ipaddress.ip_address(f"198.51.100.{i % 250 + 1}").packed, 40000 + i, bytes([192, 0, 2, 10]), 443)


def key6(i: int) -> tuple[bytes, int, bytes, int]:
    return (ipaddress.IPv6Address(0x20010DB8 << 96 | i).packed, 40000 + i, bytes(15) + b"\x10", 443)


def peer(timing: ControlTiming = TIMING, now: float = 0.0) -> Peer:
    """A peer whose first epoch is open with an empty snapshot, as AnycastNode opens every peer."""
    p = Peer(2, ADDRESS, timing, now)
    p.open_epoch(())
    return p


def send_one(p: Peer, i: int, now: float):
    """Queue one claim and send it: one new batch."""
    p.queue(Op.CLAIM, key(i))
    (batch,) = p.take_batches(now)
    return batch


# -- epochs -------------------------------------------------------------------------------------------------------


def test_open_epoch_queues_begin_then_the_snapshot_then_end():
    p = Peer(7, ADDRESS, TIMING, now=0.0)
    assert p.tx_epoch == 0 and p.idle
    p.open_epoch([key(1), key(2)])
    assert p.tx_epoch == 1 and not p.idle
    (batch,) = p.take_batches(now=0.0)
    assert (batch.receiver, batch.epoch, batch.seq) == (7, 1, 1)
    assert batch.ops == (BEGIN, (Op.CLAIM, key(1)), (Op.CLAIM, key(2)), END)


def test_changes_queued_after_opening_follow_the_snapshot():
    p = Peer(2, ADDRESS, TIMING, now=0.0)
    p.open_epoch([key(1)])
    p.queue(Op.RELEASE, key(1))
    p.queue(Op.CLAIM, key(2))
    (batch,) = p.take_batches(now=0.0)
    assert batch.ops == (BEGIN, (Op.CLAIM, key(1)), END, (Op.RELEASE, key(1)), (Op.CLAIM, key(2)))


def test_a_new_epoch_discards_the_old_stream_and_restarts_at_seq_1():
    p = peer()
    p.take_batches(now=0.0)
    send_one(p, 1, now=0.01)
    p.queue(Op.CLAIM, key(2))  # still pending
    p.digest_mismatches = 1
    p.open_epoch([key(1), key(2)])
    assert p.tx_epoch == 2 and p.retransmit_at is None and p.digest_mismatches == 0
    assert p.retransmit(now=1.0) == []  # nothing of epoch 1 is in flight any more
    (batch,) = p.take_batches(now=1.0)
    assert (batch.epoch, batch.seq) == (2, 1)
    assert batch.ops == (BEGIN, (Op.CLAIM, key(1)), (Op.CLAIM, key(2)), END)  # the old pending change is gone
    assert p.on_ack(1, 2, now=1.1) == []  # a late ack of the old epoch
    assert not p.idle


def test_stop_stream_sends_nothing_more_but_keeps_the_epoch():
    p = peer()
    p.take_batches(now=0.0)
    p.queue(Op.CLAIM, key(1))
    p.stop_stream()
    assert p.idle and p.retransmit_at is None and p.tx_epoch == 1
    assert p.take_batches(now=1.0) == []


# -- sending ------------------------------------------------------------------------------------------------------


def test_take_batches_respects_the_window():
    p = Peer(2, ADDRESS, ControlTiming(window=2), now=0.0)
    p.open_epoch([key6(i) for i in range(100)])  # 38 bytes per claim: four batches' worth
    first = p.take_batches(now=0.0)
    assert [b.seq for b in first] == [1, 2]
    assert p.take_batches(now=0.1) == []  # the window is full
    assert p.on_ack(1, 1, now=0.2) == first[:1]
    third = p.take_batches(now=0.2)
    assert [b.seq for b in third] == [3]
    assert p.on_ack(1, 3, now=0.3) == [first[1], *third]
    assert [b.seq for b in p.take_batches(now=0.3)] == [4]
    assert p.take_batches(now=0.3) == []


def test_take_batches_with_nothing_pending_sends_nothing_and_arms_no_timer():
    p = peer()
    p.take_batches(now=0.0)
    p.on_ack(1, 1, now=0.1)
    assert p.take_batches(now=0.2) == [] and p.retransmit_at is None and p.idle


def test_the_timer_is_armed_by_the_first_batch_in_flight_not_pushed_back_by_later_ones():
    p = peer()
    p.take_batches(now=0.0)
    assert p.retransmit_at == pytest.approx(0.2)
    send_one(p, 1, now=0.15)
    assert p.retransmit_at == pytest.approx(0.2)


# -- acknowledgment -----------------------------------------------------------------------------------------------


def test_on_ack_is_cumulative_and_returns_what_it_newly_covers():
    p = peer()
    (b1,) = p.take_batches(now=0.0)
    b2, b3, b4 = send_one(p, 1, now=0.0), send_one(p, 2, now=0.0), send_one(p, 3, now=0.0)
    assert p.on_ack(1, 1, now=0.1) == [b1]
    assert p.retransmit_at == pytest.approx(0.1 + 0.3)  # RFC 6298 (5.3): restarted, with the new estimate
    assert p.on_ack(1, 3, now=0.2) == [b2, b3]  # the ack of b2 was lost; b3's covers it
    assert p.on_ack(1, 3, now=0.21) == []  # a duplicate
    assert p.on_ack(1, 2, now=0.22) == []  # an older one, reordered
    assert not p.idle
    assert p.on_ack(1, 4, now=0.23) == [b4]
    assert p.idle and p.retransmit_at is None  # RFC 6298 (5.2): all acknowledged, timer off


def test_on_ack_ignores_other_epochs():
    p = peer()
    p.take_batches(now=0.0)
    assert p.on_ack(0, 1, now=0.1) == []
    assert p.on_ack(2, 1, now=0.1) == []
    assert not p.idle and p.retransmit_at == pytest.approx(0.2)


# -- retransmission -----------------------------------------------------------------------------------------------


def test_retransmit_resends_everything_in_flight_in_order_and_backs_off_to_max_rto():
    p = peer()
    sent = [*p.take_batches(now=0.0), send_one(p, 1, now=0.0), send_one(p, 2, now=0.0)]
    now, deadlines = 0.2, []
    for _ in range(5):
        assert p.retransmit(now) == sent
        deadlines.append(round(p.retransmit_at - now, 9))
        now = p.retransmit_at
    # RFC 6298 (5.5): "The host MUST set RTO <- RTO * 2"; (2.5) "A maximum value MAY be placed on RTO".
    assert deadlines == [0.4, 0.8, 1.0, 1.0, 1.0]


def test_retransmit_with_nothing_in_flight_disarms_the_timer():
    p = peer()
    p.take_batches(now=0.0)
    p.on_ack(1, 1, now=0.1)
    assert p.retransmit(now=5.0) == [] and p.retransmit_at is None


def test_an_ack_after_a_retransmission_covers_the_batches_it_resent():
    p = peer()
    sent = [*p.take_batches(now=0.0), send_one(p, 1, now=0.0)]
    p.retransmit(now=0.2)
    assert p.on_ack(1, 2, now=0.25) == sent and p.idle


def test_first_rtt_sample_sets_rto_as_rfc_6298_says():
    p = peer()
    p.take_batches(now=0.0)
    p.on_ack(1, 1, now=0.1)  # RFC 6298 (2.2): SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + 4 RTTVAR = 0.3
    send_one(p, 1, now=1.0)
    assert p.retransmit_at == pytest.approx(1.0 + 0.3)


def test_rto_is_clamped_to_min_and_max_rto():
    fast = peer()
    fast.take_batches(now=0.0)
    fast.on_ack(1, 1, now=0.001)
    send_one(fast, 1, now=1.0)
    assert fast.retransmit_at == pytest.approx(1.0 + TIMING.min_rto)
    slow = peer(ControlTiming(initial_rto=0.2, min_rto=0.05, max_rto=1.0, dead_after=30.0))
    slow.take_batches(now=0.0)
    slow.on_ack(1, 1, now=0.9)  # its timer (due at 0.2) was never fired: sent once, so R = 0.9
    send_one(slow, 1, now=1.0)
    assert slow.retransmit_at == pytest.approx(1.0 + 1.0)  # 0.9 + 4 * 0.45 capped at max_rto


def test_karn_no_rtt_sample_from_a_retransmitted_batch_and_the_backed_off_rto_stands():
    """Karn's algorithm as RFC 6298 §3 requires it, and §5's note: the RTO collapses back down only "once a new
    RTT measurement is obtained (which can only happen when new data has been sent and acknowledged)"."""
    p = peer()
    p.take_batches(now=0.0)
    p.retransmit(now=0.2)  # RTO 0.2 -> 0.4
    p.on_ack(1, 1, now=0.3)  # ambiguous: the original (R = 0.3) or the retransmission (R = 0.1)?
    send_one(p, 1, now=0.3)
    assert p.retransmit_at == pytest.approx(0.3 + 0.4)  # neither sample taken, and no collapse to 0.2
    p.on_ack(1, 2, now=0.4)  # sent once: R = 0.1 is a sample, SRTT 0.1, RTTVAR 0.05
    send_one(p, 2, now=0.4)
    assert p.retransmit_at == pytest.approx(0.4 + 0.3)


def test_karn_a_slow_path_is_learned_instead_of_retransmitting_every_batch():
    """The RTT (0.3 s) exceeds the initial RTO (0.2 s). The first batch is retransmitted, but the backed-off RTO
    lets the next one be acknowledged before its timer fires, and that sample teaches the real RTT."""
    p = Peer(2, ADDRESS, TIMING, now=0.0)
    p.open_epoch(())
    rtt, now, retransmissions = 0.3, 0.0, 0
    for i in range(10):
        send_one(p, i, now)
        sent_at = now
        while p.retransmit_at < sent_at + rtt:
            p.retransmit(p.retransmit_at)
            retransmissions += 1
        now = sent_at + rtt
        assert p.on_ack(1, i + 1, now)
    assert retransmissions == 1


# -- "I have no state for this epoch" -----------------------------------------------------------------------------


def test_lost_state_only_once_the_first_batch_was_acknowledged():
    p = peer()
    p.take_batches(now=0.0)
    send_one(p, 1, now=0.0)
    assert not p.lost_state(1)  # batch 1 may still be on its way: batch 2 overtook it
    assert not p.lost_state(2) and not p.lost_state(0)  # not our epoch
    p.on_ack(1, 1, now=0.1)
    assert p.lost_state(1)  # it had applied batch 1, so it must have lost it
    p.on_ack(1, 2, now=0.1)
    assert p.idle and p.lost_state(1)
    p.open_epoch(())
    assert not p.lost_state(1)  # a stale answer about the previous epoch


def test_lost_state_while_retransmitting_the_first_batch_is_still_false():
    p = peer()
    p.take_batches(now=0.0)
    send_one(p, 1, now=0.0)
    p.retransmit(now=0.2)
    assert not p.lost_state(1)


# -- liveness and timing ------------------------------------------------------------------------------------------


def test_a_new_peer_is_unknown_and_counts_as_live_until_declared_dead():
    p = Peer(2, ADDRESS, TIMING, now=5.0)
    assert p.liveness is Liveness.UNKNOWN and p.live and p.heard_at == 5.0 and p.incarnation is None
    p.liveness = Liveness.DEAD
    assert not p.live


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            dict(heartbeat_interval=3.0, dead_after=3.0),
            r"heartbeat_interval=3\.0 must be positive and below dead_after",
        ),
        (dict(heartbeat_interval=0.0), r"heartbeat_interval=0\.0 must be positive"),
        (dict(min_rto=0.3, initial_rto=0.2), r"0 < min_rto <= initial_rto <= max_rto"),
        (dict(initial_rto=3.0, max_rto=2.0), r"0 < min_rto <= initial_rto <= max_rto"),
        (dict(min_rto=0.0), r"0 < min_rto <= initial_rto <= max_rto"),
        (dict(window=0), r"window=0 must be at least 1"),
    ],
)
def test_control_timing_rejects_nonsense_with_a_clear_message(options, message):
    with pytest.raises(ValueError, match=message):
        ControlTiming(**options)


def test_control_timing_defaults_are_valid():
    timing = ControlTiming()
    assert timing.heartbeat_interval < timing.dead_after and timing.min_rto <= timing.initial_rto <= timing.max_rto
