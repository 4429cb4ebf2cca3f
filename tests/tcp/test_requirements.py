"""RFC 9293 requirements not covered state by state: each test names the MUST it proves."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.host import Host
from stack.seq import seq_sub
from stack.tcp.congestion import Reno, initial_window
from stack.tcp.connection import Connection
from stack.tcp.events import Closed, CloseReason, DataReceived, Reset, SendSpace
from stack.tcp.isn import CLOCK_TICKS_PER_SECOND, Rfc6528Isn
from stack.tcp.rtt import RttEstimator
from stack.tcp.state import State
from stack.wire import ACK, RST, SYN, TcpOptions, TcpSegment, build_tcp_packet

from .harness import (
    CONFIG,
    LOCAL_ISS,
    MSS,
    REMOTE_ISS,
    deliver,
    established,
    events,
    expect_nothing,
    local_seq,
    remote_seq,
    seg,
    syn_sent,
)

# --- MUST-8, MUST-9: ISNs from a 4 µs clock plus a keyed hash of the 4-tuple (RFC 6528) -------------------


def test_must_8_isn_advances_with_a_4_microsecond_clock():
    isn = Rfc6528Isn(b"k" * 16)
    a = isn(b"\x0a\x00\x00\x01", 80, b"\x0a\x00\x00\x02", 40000, 100.0)
    b = isn(b"\x0a\x00\x00\x01", 80, b"\x0a\x00\x00\x02", 40000, 101.0)
    assert seq_sub(b, a) == CLOCK_TICKS_PER_SECOND


def test_must_9_isn_offset_depends_on_the_secret_and_the_4_tuple():
    one, other = Rfc6528Isn(b"k" * 16), Rfc6528Isn(b"j" * 16)
    tuple_a = (b"\x0a\x00\x00\x01", 80, b"\x0a\x00\x00\x02", 40000)
    tuple_b = (b"\x0a\x00\x00\x01", 80, b"\x0a\x00\x00\x02", 40001)
    assert one.offset(*tuple_a) != other.offset(*tuple_a)
    assert one.offset(*tuple_a) != one.offset(*tuple_b)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Rfc6528Isn(b"short")


# --- MUST-11: SYN-RECEIVED remembers whether the open was active or passive --------------------------------


def test_must_11_rst_in_syn_received_after_simultaneous_open_is_refused():
    conn = syn_sent()
    deliver(conn, seg(REMOTE_ISS, 0, SYN))
    conn.segments_to_send(0.0)
    deliver(conn, seg(remote_seq(1), 0, RST))
    assert events(conn) == [Reset(refused=True), Closed(CloseReason.REFUSED)]


# --- MUST-15: the default send MSS ---------------------------------------------------------------------------


def test_must_15_default_send_mss_is_1220_for_ipv6():
    conn = Connection(b"\xfd" + bytes(15), 80, b"\xfd" + bytes(14) + b"\x01", 4000, LOCAL_ISS, CONFIG)
    conn.connect(0.0)
    conn.segments_to_send(0.0)
    deliver(conn, seg(REMOTE_ISS, local_seq(1), SYN | ACK))
    assert conn.tx.eff_mss == 1220


# --- MUST-18: RFC 6298 with Karn's algorithm ------------------------------------------------------------------


def test_must_18_rto_follows_rfc_6298():
    rtt = RttEstimator(rto_initial=1.0, rto_min=0.2, rto_max=60.0)
    assert rtt.rto == 1.0  # (2.1)
    rtt.sample(0.5)
    assert (rtt.srtt, rtt.rttvar, rtt.rto) == (0.5, 0.25, 1.5)  # (2.2): SRTT + 4 * RTTVAR
    rtt.sample(0.1)
    assert rtt.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.4)  # (2.3), RTTVAR first
    assert rtt.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 0.1)
    for _ in range(20):
        rtt.on_timeout()
    assert rtt.rto == 60.0  # (5.5) doubling, (2.5) capped


def test_must_18_karn_no_rtt_sample_from_a_retransmitted_segment():
    conn = established()
    conn.send(b"x")
    conn.segments_to_send(0.0)
    conn.handle_timer(conn.get_timer())
    conn.segments_to_send(1.0)  # retransmitted
    srtt_before = conn.tx.rtt.srtt
    deliver(conn, seg(remote_seq(1), local_seq(2)), now=5.0)
    assert conn.tx.rtt.srtt == srtt_before  # the 5 s "sample" was ambiguous and is not taken


# --- MUST-19: slow start, congestion avoidance, timeout backoff (RFC 5681) ----------------------------------


def test_must_19_slow_start_then_congestion_avoidance_then_loss_window():
    cc = Reno(smss=1000, initial_window_segments=10)
    assert cc.cwnd == 10_000
    cc.on_ack(1000, 10_000, 0.0, None, 0, 0)
    assert cc.cwnd == 11_000  # slow start: + min(N, L*SMSS)
    cc.ssthresh = cc.cwnd
    for _ in range(11):
        cc.on_ack(1000, 11_000, 0.0, None, 0, 0)
    assert cc.cwnd == 12_000  # congestion avoidance: + SMSS per cwnd acknowledged
    cc.on_timeout(12_000, 0.0)
    assert (cc.cwnd, cc.ssthresh) == (1000, 6000)  # RFC 5681 (4)


@pytest.mark.parametrize(("segments", "smss", "expected"), [(10, 1460, 14600), (3, 1460, 4380), (4, 536, 2144)])
def test_initial_window_follows_rfc_6928_and_5681(segments, smss, expected):
    assert initial_window(smss, segments) == expected


# --- MUST-20, MUST-21: R2 for data, settable per connection ----------------------------------------------------


def test_must_20_21_data_retransmission_gives_up_at_the_connections_own_r2():
    conn = established(dataclasses.replace(CONFIG, r2=30.0))
    conn.send(b"nobody hears")
    now = 0.0
    conn.segments_to_send(now)
    while conn.state is State.ESTABLISHED:
        now = conn.get_timer()
        conn.handle_timer(now)
        conn.segments_to_send(now)
    assert conn.close_reason is CloseReason.TIMED_OUT
    assert 30.0 <= now < 30.0 + 60.0  # at the first timeout after R2
    assert events(conn) == [Closed(CloseReason.TIMED_OUT)]


# --- MUST-34: robust against a shrinking window ----------------------------------------------------------------


def test_must_34_window_shrinking_below_what_is_in_flight_sends_nothing_new_and_recovers():
    conn = established()
    conn.send(b"a" * 3 * MSS)
    assert sum(len(s.payload) for s in conn.segments_to_send(0.0)) == 3 * MSS
    conn.send(b"b" * 1000)
    deliver(conn, seg(remote_seq(1), local_seq(1), window=100))  # right edge moved left of SND.NXT
    assert conn.tx.una_off + conn.tx.snd_wnd < conn.tx.nxt_off  # the usable window is negative
    expect_nothing(conn)
    deliver(conn, seg(remote_seq(1), local_seq(1 + 3 * MSS), window=30_000))
    out = conn.segments_to_send(0.0)
    assert [len(s.payload) for s in out] == [1000]


# --- MUST-36, MUST-37: probe a zero window for as long as the peer answers -------------------------------------


def test_must_37_zero_window_probes_answered_for_an_hour_keep_the_connection_open():
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), window=0))
    conn.send(b"patient")
    now, probes = 0.0, 0
    conn.segments_to_send(now)
    while now < 3600:
        now = conn.get_timer()
        conn.handle_timer(now)
        for probe in conn.segments_to_send(now):
            probes += 1
            assert probe.payload == b"" and probe.seq == local_seq(0)
            deliver(conn, seg(remote_seq(1), local_seq(1), window=0), now=now)
    assert conn.state is State.ESTABLISHED
    assert probes > 60  # backed off to the 60 s ceiling, never given up
    deliver(conn, seg(remote_seq(1), local_seq(1), window=MSS), now=now)
    assert [s.payload for s in conn.segments_to_send(now)] == [b"patient"]


# --- MUST-39: receiver silly-window avoidance --------------------------------------------------------------------


def test_must_39_window_update_only_once_the_window_opens_by_an_mss():
    config = dataclasses.replace(CONFIG, receive_buffer=8 * MSS)
    conn = established(config)
    conn.pause_reading()
    for i in range(8):
        deliver(conn, seg(remote_seq(1 + i * MSS), local_seq(1), payload=b"z" * MSS))
    out = conn.segments_to_send(0.0)
    assert out[-1].window == 0
    conn.resume_reading()
    conn.next_event()  # the application reads everything: the window opens by 8 MSS
    update = conn.segments_to_send(0.0)
    assert [s.window for s in update] == [8 * MSS]


def test_must_39_reading_a_little_does_not_announce_a_tiny_window():
    config = dataclasses.replace(CONFIG, receive_buffer=8 * MSS)
    conn = established(config)
    conn.pause_reading()
    for i in range(7):
        deliver(conn, seg(remote_seq(1 + i * MSS), local_seq(1), payload=b"z" * MSS))
    deliver(conn, seg(remote_seq(1 + 7 * MSS), local_seq(1), payload=b"z" * (MSS - 10)))
    conn.segments_to_send(0.0)
    assert not conn.rx.window_opened_enough()


# --- flow control both ways at once --------------------------------------------------------------------------------


def test_send_space_does_not_wait_behind_data_the_application_paused_reading():
    """An application blocked in drain() waits for SendSpace while it has paused reading; were SendSpace queued
    behind the unread data, neither end would move again (an echo service under a bulk upload did just that)."""
    config = dataclasses.replace(CONFIG, send_buffer=2 * MSS)
    conn = established(config)
    conn.pause_reading()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"d" * MSS))  # unread: the data marker comes first
    assert conn.send(b"s" * 3 * MSS) == 2 * MSS  # a short send: SendSpace is promised
    assert sum(len(s.payload) for s in conn.segments_to_send(0.0)) == 2 * MSS
    deliver(conn, seg(remote_seq(1 + MSS), local_seq(1 + 2 * MSS)))  # all of it acknowledged
    assert conn.has_events
    assert type(conn.next_event()) is SendSpace
    assert conn.next_event() is None  # the data still waits for the reader
    conn.resume_reading()
    assert conn.next_event() == DataReceived(b"d" * MSS)


# --- MUST-66: RST processed at a zero receive window -------------------------------------------------------------


def test_must_66_rst_at_rcv_nxt_is_processed_with_a_zero_window():
    config = dataclasses.replace(CONFIG, receive_buffer=MSS)
    conn = established(config)
    conn.pause_reading()
    deliver(conn, seg(remote_seq(1), local_seq(1), payload=b"f" * MSS))
    assert conn.rx.window() == 0
    deliver(conn, seg(remote_seq(1 + MSS), 0, RST))
    assert conn.state is State.CLOSED


# --- MUST-42, MUST-43, MUST-44, MUST-49: the host's open calls ---------------------------------------------------


def test_must_42_listening_port_accepts_more_connections_while_one_is_open():
    h = Host(["10.0.0.2"], secret=b"s" * 16)
    h.listen(80)
    for port in (40001, 40002):
        h.receive_packet(build_tcp_packet(TcpSegment(port, 80, 7, 0, SYN, 100), b"\x0a\0\0\x01", b"\x0a\0\0\x02"), 0)
    assert len(h.connections) == 2


def test_must_43_44_local_address_is_chosen_or_taken_from_the_caller():
    h = Host(["10.0.0.2", "10.0.0.3", "fd00::2"], secret=b"s" * 16, ttl=17)
    assert h.connect("10.0.0.1", 80, 0.0).local_addr == bytes([10, 0, 0, 2])
    assert h.connect("10.0.0.1", 80, 0.0, local_addr="10.0.0.3").local_addr == bytes([10, 0, 0, 3])
    assert len(h.connect("fd00::1", 80, 0.0).local_addr) == 16
    packets = h.packets_to_send(0.0)
    assert {p[8] for p in packets if p[0] >> 4 == 4} == {17}  # MUST-49: TTL configurable


# --- MUST-65: MSS only on SYNs --------------------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=5000))
def test_must_65_only_syns_carry_an_mss_option(data):
    conn = established()
    conn.send(data)
    for s in conn.segments_to_send(0.0):
        assert not s.flags & SYN
        assert s.options == TcpOptions()


# --- MUST-48: the application sets the DSCP of a connection's segments --------------------------------------------


def test_must_48_dscp_is_carried_in_every_segment_of_the_connection():
    h = Host(["10.0.0.2", "fd00::2"], secret=b"s" * 16)
    h.connect("10.0.0.1", 80, 0.0, config=dataclasses.replace(CONFIG, dscp=46))
    h.connect("fd00::1", 80, 0.0, config=dataclasses.replace(CONFIG, dscp=10))
    v4, v6 = sorted(h.packets_to_send(0.0), key=len)
    assert v4[1] >> 2 == 46  # IPv4 TOS byte
    assert (int.from_bytes(v6[:4], "big") >> 20) & 0xFF == 10 << 2  # IPv6 Traffic Class
    with pytest.raises(ValueError, match="dscp=64 is out of range"):
        dataclasses.replace(CONFIG, dscp=64)


# --- the send fence and watermark the anycast node uses (issue 5: "a general per-connection send limit") -------


def test_send_limit_stops_new_data_and_the_fin_at_the_fence_and_lifting_it_resumes():
    from stack.tcp.events import SendWatermark
    from stack.wire import FIN

    conn = established(dataclasses.replace(CONFIG, nodelay=True))
    conn.set_send_limit(local_seq(1 + 1000))
    conn.send(b"a" * 3000)
    conn.shutdown_write(0.0)
    out = conn.segments_to_send(0.0)
    assert sum(len(s.payload) for s in out) == 1000 and not any(s.flags & FIN for s in out)
    deliver(conn, seg(remote_seq(1), local_seq(1001)))
    assert conn.segments_to_send(0.0) == []  # acknowledged, still fenced, and no window probe either
    assert conn.get_timer() is None
    conn.set_send_watermark(local_seq(2500))
    conn.set_send_limit(None)
    out = conn.segments_to_send(0.0)
    assert sum(len(s.payload) for s in out) == 2000 and out[-1].flags & FIN
    assert events(conn) == [SendWatermark(local_seq(2500))]
