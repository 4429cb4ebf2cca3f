"""Keep-alives (RFC 9293 §3.8.4), the user timeout, challenge-ACK throttling (RFC 5961 §7) and statistics."""

import dataclasses

from stack.tcp.events import Closed, CloseReason
from stack.tcp.keepalive import KeepaliveSettings
from stack.tcp.state import State
from stack.wire import RST

from .harness import CONFIG, MSS, deliver, established, events, expect, local_seq, ours, remote_seq, seg

KEEPALIVE = KeepaliveSettings(enabled=True, idle=60.0, interval=10.0, count=3)


def test_must_25_keepalives_are_off_by_default():
    conn = established()
    assert CONFIG.keepalive.enabled is False
    assert conn.get_timer() is None  # nothing to wake up for on an idle connection


def test_must_28_default_keepalive_idle_is_at_least_two_hours():
    assert KeepaliveSettings().idle >= 7200


def test_must_24_26_keepalive_probe_after_idle_time_without_data():
    conn = established(dataclasses.replace(CONFIG, keepalive=KEEPALIVE))
    assert conn.get_timer() == 60.0
    conn.handle_timer(60.0)
    # SHLD-12: no data; one byte behind SND.UNA, so the peer answers with an ACK
    expect(conn, ours(local_seq(0), remote_seq(1)), now=60.0)
    deliver(conn, seg(remote_seq(1), local_seq(1)), now=60.5)  # the answer
    assert conn.get_timer() == 120.5
    assert conn.state is State.ESTABLISHED


def test_must_29_keepalive_gives_up_only_after_count_unanswered_probes():
    conn = established(dataclasses.replace(CONFIG, keepalive=KEEPALIVE))
    probes, now = 0, 0.0
    while conn.state is State.ESTABLISHED:
        now = conn.get_timer()
        conn.handle_timer(now)
        probes += len(conn.segments_to_send(now))
    assert probes == 3
    assert now == 60.0 + 3 * 10.0
    assert events(conn) == [Closed(CloseReason.TIMED_OUT)]


def test_must_26_no_keepalive_probe_while_data_is_outstanding():
    conn = established(dataclasses.replace(CONFIG, keepalive=KEEPALIVE, r2=1000.0))
    conn.send(b"unanswered")
    conn.segments_to_send(0.0)
    now = 0.0
    while now < 200:
        now = conn.get_timer()
        conn.handle_timer(now)
        for s in conn.segments_to_send(now):
            assert s.payload == b"unanswered"  # retransmissions only, never a keep-alive probe


def test_must_24_keepalive_switched_on_for_one_connection_at_run_time():
    conn = established()
    conn.set_keepalive(KEEPALIVE, now=5.0)
    assert conn.get_timer() == 65.0
    conn.set_keepalive(KeepaliveSettings(enabled=False), now=6.0)
    assert conn.get_timer() is None


def test_user_timeout_replaces_r2_for_data():
    conn = established(dataclasses.replace(CONFIG, user_timeout=5.0))
    conn.send(b"x")
    conn.segments_to_send(0.0)
    now = 0.0
    while conn.state is State.ESTABLISHED:
        now = conn.get_timer()
        conn.handle_timer(now)
        conn.segments_to_send(now)
    assert conn.close_reason is CloseReason.TIMED_OUT
    assert 5.0 <= now < 10.0


def test_rfc5961_challenge_acks_are_rate_limited_per_second():
    conn = established(dataclasses.replace(CONFIG, challenge_acks_per_second=3))
    answered = 0
    for i in range(10):
        deliver(conn, seg(remote_seq(100 + i), 0, RST), now=0.5)  # in window, not at RCV.NXT
        answered += len(conn.segments_to_send(0.5))
    assert answered == 3
    assert conn.info().challenge_acks_suppressed == 7
    deliver(conn, seg(remote_seq(200), 0, RST), now=1.6)  # a new second
    expect(conn, ours(local_seq(1), remote_seq(1)), now=1.6)


def test_info_reports_what_an_operator_needs():
    conn = established()
    conn.send(b"a" * 2 * MSS)
    conn.segments_to_send(0.0)
    deliver(conn, seg(remote_seq(1), local_seq(1 + MSS), payload=b"hi"), now=0.05)
    info = conn.info()
    assert info.state == "ESTABLISHED"
    assert info.congestion_control == CONFIG.congestion_control
    assert info.recovery == "open"
    assert info.bytes_sent == 2 * MSS and info.unacked == MSS and info.bytes_received == 2
    assert info.rtt is not None and info.rto >= CONFIG.rto_min
    assert info.snd_mss == MSS and info.cwnd > 0
    assert dataclasses.asdict(info)["retransmits"] == 0  # a plain record, ready for metrics and `status`


def test_out_of_order_blocks_are_bounded_and_the_rest_is_refused_and_counted():
    """One byte at every other position of the window would make each its own block; the count is bounded."""
    conn = established(dataclasses.replace(CONFIG, max_out_of_order_blocks=16))
    for i in range(100):
        deliver(conn, seg(remote_seq(1 + 2 * (i + 1)), local_seq(1), payload=b"x"), now=0.1)
    assert len(conn.rx.ooo) == 16 and conn.info().out_of_order_refused == 84
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"ab"), now=0.2)  # the first hole fills
    assert conn.state is State.ESTABLISHED and len(conn.rx.ooo) == 15
