"""RFC 9293 §3.10.7, state by state: deliver a segment, expect exact segments back."""

import dataclasses

import pytest

from stack.tcp.events import Closed, CloseReason, DataReceived, Established, PeerClosed, Reset
from stack.tcp.state import State
from stack.wire import ACK, FIN, PSH, RST, SYN, TcpOptions

from .harness import (
    CONFIG,
    LOCAL_ISS,
    MSS,
    REMOTE_ISS,
    close_wait,
    closing,
    deliver,
    established,
    events,
    expect,
    expect_nothing,
    fin_wait_1,
    fin_wait_2,
    last_ack,
    local_seq,
    new_connection,
    ours,
    remote_seq,
    seg,
    syn_received,
    syn_sent,
    time_wait,
)

# --- LISTEN (RFC 9293 §3.10.7.2) ---------------------------------------------------------------------------


def test_listen_ignores_rst():
    conn = new_connection()
    conn.listen()
    deliver(conn, seg(REMOTE_ISS, 0, RST))
    expect_nothing(conn)
    assert conn.state is State.LISTEN


def test_listen_answers_ack_with_rst_at_seg_ack():
    conn = new_connection()
    conn.listen()
    deliver(conn, seg(REMOTE_ISS, 1234, ACK))
    expect(conn, ours(1234, 0, RST, window=0))
    assert conn.state is State.LISTEN


def test_listen_syn_gets_syn_ack_with_our_mss():
    syn_received()


def test_listen_drops_segment_without_syn_ack_or_rst():
    conn = new_connection()
    conn.listen()
    deliver(conn, seg(REMOTE_ISS, 0, FIN))
    expect_nothing(conn)


# --- SYN-SENT (RFC 9293 §3.10.7.3) -------------------------------------------------------------------------


def test_syn_sent_syn_ack_establishes_and_acks():
    conn = syn_sent()
    deliver(conn, seg(REMOTE_ISS, local_seq(1), SYN | ACK, options=TcpOptions(mss=1000)))
    expect(conn, ours(local_seq(1), remote_seq(1)))
    assert conn.state is State.ESTABLISHED
    assert events(conn) == [Established()]
    assert conn.tx.eff_mss == 1000  # MUST-16: the peer's MSS bounds what we send


def test_syn_sent_without_peer_mss_uses_536_for_ipv4():
    conn = syn_sent()
    deliver(conn, seg(REMOTE_ISS, local_seq(1), SYN | ACK))
    assert conn.tx.eff_mss == 536  # MUST-15


@pytest.mark.parametrize("bad_ack", [LOCAL_ISS, LOCAL_ISS - 1, LOCAL_ISS + 2])
def test_syn_sent_unacceptable_ack_gets_rst_at_seg_ack(bad_ack):
    conn = syn_sent()
    deliver(conn, seg(REMOTE_ISS, bad_ack, SYN | ACK))
    expect(conn, ours(bad_ack, 0, RST, window=0))
    assert conn.state is State.SYN_SENT


def test_syn_sent_rst_with_unacceptable_ack_is_dropped():
    conn = syn_sent()
    deliver(conn, seg(0, LOCAL_ISS + 5, RST | ACK))
    expect_nothing(conn)
    assert conn.state is State.SYN_SENT


def test_syn_sent_rst_acking_our_syn_means_refused():
    conn = syn_sent()
    deliver(conn, seg(0, local_seq(1), RST | ACK))
    expect_nothing(conn)
    assert conn.state is State.CLOSED
    assert events(conn) == [Reset(refused=True), Closed(CloseReason.REFUSED)]


def test_syn_sent_rst_without_ack_is_dropped():
    conn = syn_sent()
    deliver(conn, seg(0, 0, RST))
    assert conn.state is State.SYN_SENT


def test_syn_sent_simultaneous_open_sends_syn_ack_then_establishes():
    conn = syn_sent()
    deliver(conn, seg(REMOTE_ISS, 0, SYN, options=TcpOptions(mss=MSS)))
    expect(conn, ours(LOCAL_ISS, remote_seq(1), SYN | ACK, options=TcpOptions(mss=MSS)))
    assert conn.state is State.SYN_RECEIVED
    deliver(conn, seg(remote_seq(1), local_seq(1), SYN | ACK))  # the peer's SYN,ACK: a SYN in SYN-RECEIVED
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK))
    assert conn.state is State.ESTABLISHED


def test_syn_sent_segment_without_syn_or_rst_is_dropped():
    conn = syn_sent()
    deliver(conn, seg(REMOTE_ISS, local_seq(1), ACK))
    expect_nothing(conn)
    assert conn.state is State.SYN_SENT


# --- SYN-RECEIVED ------------------------------------------------------------------------------------------


def test_syn_received_ack_of_syn_establishes():
    conn = syn_received()
    deliver(conn, seg(remote_seq(1), local_seq(1)))
    assert conn.state is State.ESTABLISHED
    assert events(conn) == [Established()]


def test_syn_received_unacceptable_ack_gets_rst():
    conn = syn_received()
    deliver(conn, seg(remote_seq(1), local_seq(7)))
    expect(conn, ours(local_seq(7), 0, RST, window=0))
    assert conn.state is State.SYN_RECEIVED


def test_syn_received_duplicate_syn_resends_syn_ack():
    conn = syn_received()
    deliver(conn, seg(REMOTE_ISS, 0, SYN, options=TcpOptions(mss=MSS)))
    expect(conn, ours(LOCAL_ISS, remote_seq(1), SYN | ACK, options=TcpOptions(mss=MSS)))


def test_syn_received_passive_rst_returns_quietly():
    conn = syn_received()
    deliver(conn, seg(remote_seq(1), 0, RST))
    assert conn.state is State.CLOSED
    assert conn.close_reason is CloseReason.RESET


def test_syn_received_ack_with_data_establishes_and_delivers():
    conn = syn_received()
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK | PSH, payload=b"hello"))
    assert events(conn) == [Established(), DataReceived(b"hello")]
    assert conn.rx.rcv_nxt == remote_seq(6)  # crossed the wrap


# --- ESTABLISHED: sequence check, RST, SYN, ACK, text, FIN (RFC 9293 §3.10.7.4) ----------------------------


def test_established_in_order_data_crossing_the_wrap_is_delivered():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK | PSH, payload=b"abcdefgh"))
    assert events(conn) == [DataReceived(b"abcdefgh")]
    assert conn.rx.rcv_nxt == remote_seq(9) == 4


def test_established_second_full_segment_is_acked_at_once():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"x" * MSS))
    expect_nothing(conn)  # the first is delayed (MUST-40 allows it)
    deliver(conn, seg(remote_seq(1 + MSS), local_seq(1), payload=b"y" * MSS))
    expect(conn, ours(local_seq(1), remote_seq(1 + 2 * MSS), window=64 * 1024 - 2 * MSS))


def test_established_delayed_ack_fires_within_its_timeout():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"x"), now=1.0)
    assert conn.get_timer() == pytest.approx(1.0 + CONFIG.delayed_ack)
    conn.handle_timer(1.0 + CONFIG.delayed_ack)
    expect(conn, ours(local_seq(1), remote_seq(2)), now=1.0 + CONFIG.delayed_ack)


def test_established_out_of_order_segment_gets_immediate_duplicate_ack_then_fills():
    conn = established()
    deliver(conn, seg(remote_seq(4), local_seq(1), payload=b"def"))
    expect(conn, ours(local_seq(1), remote_seq(1)))
    assert events(conn) == []
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"abc"))
    # filling a hole is acknowledged at once; the six unread bytes narrow the window
    expect(conn, ours(local_seq(1), remote_seq(7), window=64 * 1024 - 6))
    assert events(conn) == [DataReceived(b"abcdef")]


def test_established_old_duplicate_segment_is_acked_and_dropped():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"abc"))
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"abc"))
    expect(conn, ours(local_seq(1), remote_seq(4), window=64 * 1024 - 3))
    assert events(conn) == [DataReceived(b"abc")]


def test_established_overlapping_segment_delivers_only_new_bytes():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"abc"))
    deliver(conn, seg(remote_seq(2), local_seq(1), payload=b"bcdef"))
    assert events(conn) == [DataReceived(b"abcdef")]


def test_established_segment_beyond_window_is_acked_and_dropped():
    conn = established()
    deliver(conn, seg(remote_seq(1 + 0xFFFF), local_seq(1), payload=b"zz"))
    expect(conn, ours(local_seq(1), remote_seq(1)))
    assert events(conn) == []


def test_established_rst_exactly_at_rcv_nxt_resets():
    conn = established()
    deliver(conn, seg(remote_seq(1), 0, RST))
    assert conn.state is State.CLOSED
    assert events(conn) == [Reset(), Closed(CloseReason.RESET)]


def test_established_rst_in_window_but_not_at_rcv_nxt_gets_challenge_ack():
    conn = established()
    deliver(conn, seg(remote_seq(100), 0, RST))
    expect(conn, ours(local_seq(1), remote_seq(1)))
    assert conn.state is State.ESTABLISHED


def test_established_rst_outside_window_is_dropped_silently():
    conn = established()
    deliver(conn, seg(remote_seq(1 << 20), 0, RST))
    expect_nothing(conn)
    assert conn.state is State.ESTABLISHED


def test_established_syn_anywhere_gets_challenge_ack():
    conn = established()
    deliver(conn, seg(remote_seq(1), 0, SYN))
    expect(conn, ours(local_seq(1), remote_seq(1)))
    assert conn.state is State.ESTABLISHED


def test_established_segment_without_ack_is_dropped():
    conn = established()
    deliver(conn, seg(remote_seq(1), 0, PSH, payload=b"data"))
    expect_nothing(conn)
    assert events(conn) == []


def test_established_ack_of_unsent_data_gets_ack_and_is_dropped():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(50), payload=b"abc"))
    expect(conn, ours(local_seq(1), remote_seq(1)))
    assert events(conn) == []


def test_established_data_is_sent_and_acknowledged():
    conn = established()
    assert conn.send(b"hello") == 5
    expect(conn, ours(local_seq(1), remote_seq(1), ACK | PSH, payload=b"hello"))
    deliver(conn, seg(remote_seq(1), local_seq(6)))
    assert conn.tx.snd_una == local_seq(6)
    assert conn.get_timer() is None  # RFC 6298 (5.2): all acknowledged, timer off


def test_established_send_respects_peer_window_and_mss():
    conn = established()
    conn.send(b"a" * 40_000)
    out = conn.segments_to_send(0.0)
    # the peer advertised 32 KiB; cwnd starts at 10 segments (RFC 6928) = 14600 bytes
    assert [len(s.payload) for s in out] == [MSS] * 10
    assert out[-1].flags == ACK


def test_established_fin_moves_to_close_wait_after_data_and_reports_end_of_stream():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK | FIN | PSH, payload=b"bye"))
    expect(conn, ours(local_seq(1), remote_seq(5), window=64 * 1024 - 3))
    assert conn.state is State.CLOSE_WAIT
    assert events(conn) == [DataReceived(b"bye"), PeerClosed()]


def test_established_out_of_order_fin_waits_for_the_hole():
    conn = established()
    deliver(conn, seg(remote_seq(4), local_seq(1), ACK | FIN, payload=b"def"))
    assert conn.state is State.ESTABLISHED
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"abc"))
    assert conn.state is State.CLOSE_WAIT
    assert events(conn) == [DataReceived(b"abcdef"), PeerClosed()]


def test_established_abort_sends_rst_at_snd_nxt():
    conn = established()
    conn.abort(0.0)
    expect(conn, ours(local_seq(1), remote_seq(1), RST | ACK, window=0))
    assert events(conn) == [Closed(CloseReason.ABORTED)]


def test_close_with_unread_data_resets_the_peer():
    conn = established()
    conn.pause_reading()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"unread"))
    conn.close(0.0)
    expect(conn, ours(local_seq(1), remote_seq(7), RST | ACK, window=0))
    assert conn.state is State.CLOSED


# --- closing states ----------------------------------------------------------------------------------------


def test_fin_wait_1_ack_of_fin_moves_to_fin_wait_2():
    fin_wait_2()


def test_fin_wait_1_peer_fin_without_ack_of_ours_moves_to_closing():
    closing()


def test_fin_wait_1_peer_fin_acking_ours_moves_to_time_wait():
    conn = fin_wait_1()
    deliver(conn, seg(remote_seq(1), local_seq(2), ACK | FIN))
    expect(conn, ours(local_seq(2), remote_seq(2)))
    assert conn.state is State.TIME_WAIT


def test_fin_wait_2_keeps_receiving_data_after_half_close():
    conn = fin_wait_2()
    deliver(conn, seg(remote_seq(1), local_seq(2), payload=b"more"))
    assert events(conn)[-1] == DataReceived(b"more")
    assert conn.state is State.FIN_WAIT_2


def test_fin_wait_2_peer_fin_moves_to_time_wait():
    time_wait()


def test_closing_ack_of_fin_moves_to_time_wait():
    conn = closing()
    deliver(conn, seg(remote_seq(2), local_seq(2)))
    assert conn.state is State.TIME_WAIT


def test_close_wait_allows_sending_then_last_ack():
    conn = close_wait()
    conn.send(b"reply")
    conn.shutdown_write(0.0)
    expect(conn, ours(local_seq(1), remote_seq(2), ACK | PSH | FIN, payload=b"reply"))
    assert conn.state is State.LAST_ACK


def test_last_ack_ack_of_fin_closes_normally():
    conn = last_ack()
    deliver(conn, seg(remote_seq(2), local_seq(2)))
    assert conn.state is State.CLOSED
    assert events(conn) == [Closed(CloseReason.NORMAL)]


def test_time_wait_lasts_two_msl_then_closes():
    conn = time_wait()
    assert conn.get_timer() == pytest.approx(2 * CONFIG.msl)
    conn.handle_timer(2 * CONFIG.msl)
    assert conn.state is State.CLOSED
    assert conn.get_timer() is None


def test_time_wait_retransmitted_fin_is_acked_and_restarts_the_timer():
    conn = time_wait()
    deliver(conn, seg(remote_seq(1), local_seq(2), ACK | FIN), now=10.0)
    expect(conn, ours(local_seq(2), remote_seq(2)), now=10.0)
    assert conn.get_timer() == pytest.approx(10.0 + 2 * CONFIG.msl)


@pytest.mark.parametrize("make", [fin_wait_2, close_wait, closing, last_ack])
def test_rst_at_rcv_nxt_closes_every_later_state_but_time_wait(make):
    conn = make()
    deliver(conn, seg(conn.rx.rcv_nxt, 0, RST))
    assert conn.state is State.CLOSED


def test_time_wait_ignores_rst_as_rfc_1337_advises():
    conn = time_wait()
    deliver(conn, seg(conn.rx.rcv_nxt, 0, RST), now=10.0)
    assert conn.state is State.TIME_WAIT
    assert conn.get_timer() == pytest.approx(2 * CONFIG.msl)  # the 2*MSL runs on, not restarted
    assert conn.segments_to_send(10.0) == []


def test_time_wait_takes_rst_when_rfc_1337_is_off_as_linux_does_by_default():
    conn = time_wait(dataclasses.replace(CONFIG, rfc1337=False))
    deliver(conn, seg(conn.rx.rcv_nxt, 0, RST))
    assert conn.state is State.CLOSED


# --- timers ------------------------------------------------------------------------------------------------


def test_retransmission_timeout_resends_and_backs_off():
    conn = established()
    conn.send(b"lost")
    expect(conn, ours(local_seq(1), remote_seq(1), ACK | PSH, payload=b"lost"))
    rto = conn.tx.rtt.rto
    assert conn.get_timer() == pytest.approx(rto)
    conn.handle_timer(rto)
    expect(conn, ours(local_seq(1), remote_seq(1), ACK | PSH, payload=b"lost"), now=rto)
    assert conn.tx.rtt.rto == pytest.approx(2 * rto)  # MUST-18 / RFC 6298 (5.5)
    assert conn.tx.cc.cwnd == MSS  # RFC 5681 (4): loss window


def test_syn_retransmits_until_r2_then_reports_timeout():
    conn = syn_sent()
    now = 0.0
    while conn.state is State.SYN_SENT:
        now = conn.get_timer()
        conn.handle_timer(now)
        conn.segments_to_send(now)
    assert conn.close_reason is CloseReason.TIMED_OUT
    assert now >= CONFIG.syn_r2  # MUST-23: at least 3 minutes for a SYN


def test_zero_window_is_probed_with_backoff_and_reopens():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), window=0))
    conn.send(b"wait")
    expect_nothing(conn)
    first = conn.get_timer()
    assert first is not None
    conn.handle_timer(first)
    expect(conn, ours(local_seq(0), remote_seq(1)), now=first)  # an old sequence number elicits an ACK
    second = conn.get_timer()
    assert second - first > first  # exponential backoff (MUST-35 .. MUST-37)
    deliver(conn, seg(remote_seq(1), local_seq(1), window=1000), now=second)
    expect(conn, ours(local_seq(1), remote_seq(1), ACK | PSH, payload=b"wait"), now=second)


def test_pure_ack_after_a_timeout_carries_the_highest_sequence_sent():
    """Regression: with go-back-N, an ACK sent after a timeout carried the pulled-back SND.NXT, fell before the
    peer's RCV.NXT, was dropped as unacceptable, and the two ends traded ACKs forever."""
    conn = established()
    conn.send(b"a" * 2 * MSS)
    conn.segments_to_send(0.0)
    conn.handle_timer(conn.get_timer())
    (retransmission,) = conn.segments_to_send(1.0)  # the loss window is one segment: the first goes again
    assert retransmission.seq == local_seq(1) and len(retransmission.payload) == MSS
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"x"), now=1.0)
    deliver(conn, seg(remote_seq(2), local_seq(1), payload=b"y"), now=1.0)
    expect(conn, ours(local_seq(1 + 2 * MSS), remote_seq(3), window=64 * 1024 - 2), now=1.0)
