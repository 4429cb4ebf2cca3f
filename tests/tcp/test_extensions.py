"""The TCP extensions, scenario by scenario: window scaling and timestamps (RFC 7323), SACK and D-SACK (RFC 2018,
RFC 2883), loss recovery with and without SACK (RFC 8985, RFC 5681, RFC 3042), Nagle, zero windows and slow start.

The scenarios are those public TCP test corpora check (packetdrill's fast_retransmit, sack, slow_start, ts_recent,
nagle, zero-window and PAWS cases), re-expressed in the harness: build a connection, deliver a segment, expect
exact segments back.

The handshake has a round trip of 100 ms: the peer's SYN arrives at t = 0 and its ACK at t = 0.1, so every test
starts at 0.1 s with SRTT = 100 ms measured from the echoed timestamp. Both ends run a 1 ms timestamp clock
(RFC 7323 §5.4); the peer's starts just below 2**32, so its TSvals wrap during the tests as its sequence
numbers do.
"""

import dataclasses

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.events import Closed, CloseReason, DataReceived, Reset
from stack.tcp.state import State
from stack.wire import ACK, FIN, NO_OPTIONS, PSH, RST, SYN, TcpOptions, TcpSegment, parse_options

from .harness import (
    CONFIG,
    LOCAL_ISS,
    MSS,
    REMOTE_ISS,
    deliver,
    events,
    expect,
    expect_nothing,
    local_seq,
    new_connection,
    ours,
    remote_seq,
    seg,
)

MASK = 0xFFFF_FFFF
EXT = dataclasses.replace(CONFIG, window_scaling=True, timestamps=True, sack=True)
BUF = EXT.receive_buffer  # 64 KiB
OUR_SHIFT = 1  # RFC 7323 §2.3: the smallest shift that lets the 16-bit field cover 64 KiB
BIG = dataclasses.replace(EXT, receive_buffer=1 << 20)
BIG_SHIFT = 5  # 1 MiB = 0xFFFF << 4 plus a little: five bits
PEER_SHIFT = 7
PEER_FIELD = 256  # the peer's window field once scaling is on: 256 << 7 = 32 KiB
PEER_SYN_WINDOW = 32_768  # the window in the peer's SYN, never scaled
SMSS = MSS - 12  # our Eff.snd.MSS: every segment carries the 12 bytes of the timestamps option (RFC 7323 §3.2)
PEER_TS0 = 0xFFFF_FF00  # the peer's TSval at t = 0; it wraps 256 ms in
HANDSHAKE_RTT = 0.1
T0 = HANDSHAKE_RTT  # when the connection is established


def _our_ts0() -> int:
    conn = new_connection(EXT)
    conn.connect(0.0)
    (syn,) = conn.segments_to_send(0.0)
    return syn.options.timestamps[0]


OUR_TS0 = _our_ts0()  # our TSval at t = 0 (a per-connection offset, RFC 7323 §5.4)


def our_ts(now: float) -> int:
    """Our TSval at ``now``: the stack's 1 ms timestamp clock."""
    return (OUR_TS0 + int(now * 1000)) & MASK


def peer_ts(now: float) -> int:
    return (PEER_TS0 + round(now * 1000)) & MASK


def field(unread: int = 0, shift: int = OUR_SHIFT, buf: int = BUF) -> int:
    """The window field we advertise with ``unread`` bytes waiting for the application."""
    return (buf - unread) >> shift


def peer_seg(
    n: int,
    payload: bytes = b"",
    flags: int = ACK,
    *,
    at: float,
    ack: int = 1,
    tsval: int | None = None,
    tsecr: int | None = None,
    sack: tuple[tuple[int, int], ...] = (),
    window: int = PEER_FIELD,
) -> TcpSegment:
    """A segment from a peer with timestamps: byte ``n`` of its stream, acknowledging our byte ``ack``."""
    ts = (peer_ts(at) if tsval is None else tsval, our_ts(0.0) if tsecr is None else tsecr)
    options = TcpOptions(timestamps=ts, sack_blocks=sack)
    return seg(remote_seq(n), local_seq(ack), flags, window, payload, options)


def arrive(conn: Connection, n: int, payload: bytes = b"", flags: int = ACK, *, at: float, **kw) -> None:
    deliver(conn, peer_seg(n, payload, flags, at=at, **kw), now=at)


def out(
    n: int,
    ack: int,
    flags: int = ACK,
    payload: bytes = b"",
    *,
    at: float,
    tsecr: int,
    window: int | None = None,
    sack: tuple[tuple[int, int], ...] = (),
) -> TcpSegment:
    """A segment from us with timestamps: our byte ``n``, acknowledging the peer's byte ``ack``."""
    options = TcpOptions(timestamps=(our_ts(at), tsecr), sack_blocks=sack)
    return ours(local_seq(n), remote_seq(ack), flags, field() if window is None else window, payload, options)


def peer_syn_options(window_scale: int | None = PEER_SHIFT, timestamps: bool = True, sack: bool = True) -> TcpOptions:
    return TcpOptions(
        mss=MSS,
        window_scale=window_scale,
        sack_permitted=sack,
        timestamps=(peer_ts(0.0), 0) if timestamps else None,
    )


def established_ext(
    config: TcpConfig = EXT, syn_options: TcpOptions | None = None, peer_window: int | None = None
) -> Connection:
    """Passive open at t = 0 against a peer that offers WS 7, SACK and timestamps (unless ``syn_options`` says
    otherwise); the peer's ACK of our SYN,ACK arrives at T0 with ``peer_window`` in its window field."""
    syn_options = peer_syn_options() if syn_options is None else syn_options
    ws = config.window_scaling and syn_options.window_scale is not None
    ts = config.timestamps and syn_options.timestamps is not None
    conn = new_connection(config)
    conn.listen()
    deliver(conn, seg(REMOTE_ISS, 0, SYN, PEER_SYN_WINDOW, options=syn_options))
    expect(
        conn,
        ours(
            LOCAL_ISS,
            remote_seq(1),
            SYN | ACK,
            window=min(config.receive_buffer, 0xFFFF),
            options=TcpOptions(
                mss=config.mss,
                window_scale=config.receive_window_scale if ws else None,
                sack_permitted=config.sack and syn_options.sack_permitted,
                timestamps=(our_ts(0.0), peer_ts(0.0)) if ts else None,
            ),
        ),
    )
    if peer_window is None:
        peer_window = PEER_FIELD if ws else PEER_SYN_WINDOW
    options = TcpOptions(timestamps=(peer_ts(T0), our_ts(0.0))) if syn_options.timestamps else NO_OPTIONS
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK, peer_window, options=options), now=T0)
    expect_nothing(conn, now=T0)
    assert conn.state is State.ESTABLISHED
    events(conn)
    return conn


# --- RFC 7323 §2: window scaling ---------------------------------------------------------------------------


def test_window_scale_in_both_syns_scales_the_peer_window_left_and_ours_right():
    conn = established_ext(BIG, peer_window=8)
    assert conn.tx.snd_wnd == 8 << PEER_SHIFT == 1024
    # RFC 7323 §2.3: SEG.WND "MUST be left-shifted by Snd.Wind.Shift bits before updating SND.WND". 1024 bytes
    # go, not 8; under the MSS, yet half the largest window offered (sender SWS avoidance lets it go).
    conn.send(b"s" * 2000)
    expect(
        conn, out(1, 1, ACK, b"s" * 1024, at=T0, tsecr=peer_ts(T0), window=field(shift=BIG_SHIFT, buf=1 << 20)), now=T0
    )
    # RFC 7323 §2.3: our SEG.WND "MUST be right-shifted by Rcv.Wind.Shift bits" (2880 unread: a multiple of 32).
    arrive(conn, 1, b"a" * 1440, at=0.2, ack=1025, window=8)
    arrive(conn, 1441, b"b" * 1440, at=0.2, ack=1025, window=8)
    window = field(2880, shift=BIG_SHIFT, buf=1 << 20)
    expect(conn, out(1025, 2881, ACK | PSH, b"s" * 976, at=0.2, tsecr=peer_ts(0.2), window=window), now=0.2)


def test_window_scale_offered_only_by_the_peer_is_not_used_either_way():
    config = dataclasses.replace(EXT, window_scaling=False)
    conn = established_ext(config, peer_window=1000)  # the SYN,ACK carries no WS option: checked inside
    assert conn.tx.snd_wnd == 1000
    arrive(conn, 1, b"a" * MSS, at=0.2, window=1000)
    arrive(conn, 1 + MSS, b"b" * MSS, at=0.2, window=1000)
    expect(conn, out(1, 1 + 2 * MSS, at=0.2, tsecr=peer_ts(0.2), window=BUF - 2 * MSS), now=0.2)


def test_window_scale_offered_only_by_us_in_a_syn_ack_is_left_out():
    conn = established_ext(EXT, syn_options=peer_syn_options(window_scale=None), peer_window=1000)
    assert conn.tx.snd_wnd == 1000
    arrive(conn, 1, b"a" * MSS, at=0.2, window=1000)
    arrive(conn, 1 + MSS, b"b" * MSS, at=0.2, window=1000)
    expect(conn, out(1, 1 + 2 * MSS, at=0.2, tsecr=peer_ts(0.2), window=BUF - 2 * MSS), now=0.2)


def test_window_scale_offered_only_by_us_in_a_syn_is_not_used_either_way():
    conn = new_connection(BIG)
    conn.connect(0.0)
    expect(
        conn,
        ours(
            LOCAL_ISS,
            0,
            SYN,
            window=0xFFFF,
            options=TcpOptions(mss=MSS, window_scale=BIG_SHIFT, sack_permitted=True, timestamps=(our_ts(0.0), 0)),
        ),
    )
    syn_ack = TcpOptions(mss=MSS, sack_permitted=True, timestamps=(peer_ts(0.1), our_ts(0.0)))
    deliver(conn, seg(REMOTE_ISS, local_seq(1), SYN | ACK, 1000, options=syn_ack), now=0.1)
    # Without scaling our window field is capped at 0xFFFF (RFC 7323 §2.2), not the 1 MiB buffer shifted.
    expect(conn, out(1, 1, at=0.1, tsecr=peer_ts(0.1), window=0xFFFF), now=0.1)
    arrive(conn, 1, at=0.2, window=2000)
    assert conn.tx.snd_wnd == 2000


def test_window_in_syn_and_syn_ack_is_never_scaled():
    # Ours: the SYN,ACK of a 1 MiB receiver with shift 5 says 0xFFFF, not 1 MiB >> 5 (checked in the helper).
    established_ext(BIG)
    # Theirs: RFC 7323 §2.2: "The window field in a segment where the SYN bit is set (i.e., a <SYN> or
    # <SYN,ACK>) MUST NOT be scaled."
    conn = new_connection(EXT)
    conn.connect(0.0)
    conn.segments_to_send(0.0)
    syn_ack = TcpOptions(mss=MSS, window_scale=PEER_SHIFT, sack_permitted=True, timestamps=(peer_ts(0.1), our_ts(0)))
    deliver(conn, seg(REMOTE_ISS, local_seq(1), SYN | ACK, 1000, options=syn_ack), now=0.1)
    assert conn.tx.snd_wnd == 1000
    assert conn.tx.snd_wscale == PEER_SHIFT  # from here on its windows are scaled
    arrive(conn, 1, at=0.2, window=1000)
    assert conn.tx.snd_wnd == 1000 << PEER_SHIFT


def test_window_scale_above_14_is_used_as_14():
    # RFC 7323 §2.3: "If a Window Scale option is received with a shift.cnt value larger than 14, the TCP
    # SHOULD log the error but MUST use 14 instead of the specified value." Parsed from the wire, as it arrives.
    options = parse_options(bytes([2, 4, MSS >> 8, MSS & 0xFF, 1, 3, 3, 15]))
    config = dataclasses.replace(EXT, timestamps=False, sack=False)
    conn = new_connection(config)
    conn.listen()
    deliver(conn, seg(REMOTE_ISS, 0, SYN, PEER_SYN_WINDOW, options=options))
    expect(
        conn,
        ours(LOCAL_ISS, remote_seq(1), SYN | ACK, window=0xFFFF, options=TcpOptions(mss=MSS, window_scale=OUR_SHIFT)),
    )
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK, 2), now=0.1)
    assert conn.tx.snd_wnd == 2 << 14


# --- RFC 7323 §3-5: timestamps, RTTM and PAWS --------------------------------------------------------------


def test_timestamps_not_offered_by_the_peer_are_not_used():
    config = dataclasses.replace(EXT, sack=False)
    conn = established_ext(config, syn_options=peer_syn_options(timestamps=False, sack=False))
    assert not conn.ts.enabled
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK, PEER_FIELD, b"a" * 100), now=0.2)
    deliver(conn, seg(remote_seq(101), local_seq(1), ACK, PEER_FIELD, b"b" * 100), now=0.2)
    expect(conn, ours(local_seq(1), remote_seq(201), window=field(200)), now=0.2)
    assert conn.tx.eff_mss == MSS  # no option space set aside


def test_timestamps_offered_only_by_the_peer_are_left_out_of_the_syn_ack_and_ignored():
    config = dataclasses.replace(EXT, timestamps=False, sack=False)
    conn = established_ext(config, syn_options=peer_syn_options(sack=False))
    assert not conn.ts.enabled
    arrive(conn, 1, b"a" * 100, at=0.2, tsval=peer_ts(0.0) - 5)  # an "old" TSval: no PAWS without timestamps
    arrive(conn, 101, b"b" * 100, at=0.2)
    expect(conn, ours(local_seq(1), remote_seq(201), window=field(200)), now=0.2)
    assert conn.ts.paws_drops == 0


def test_timestamps_offered_only_by_us_in_a_syn_are_not_used():
    conn = new_connection(EXT)
    conn.connect(0.0)
    conn.segments_to_send(0.0)
    deliver(conn, seg(REMOTE_ISS, local_seq(1), SYN | ACK, 1000, options=TcpOptions(mss=MSS)), now=0.1)
    expect(conn, ours(local_seq(1), remote_seq(1), window=0xFFFF), now=0.1)
    assert not conn.ts.enabled


def test_every_segment_after_negotiation_carries_tsval_and_echoes_ts_recent():
    # RFC 7323 §3.2: once both SYNs carried it, "the TSopt MUST be sent in every non-<RST> segment".
    conn = established_ext()
    recent = peer_ts(T0)
    conn.send(b"data")
    expect(conn, out(1, 1, ACK | PSH, b"data", at=0.2, tsecr=recent), now=0.2)
    timer = conn.get_timer()
    conn.handle_timer(timer)
    # The retransmission carries a fresh TSval (RFC 7323 §4.1, so its echo can be told from the original's).
    expect(conn, out(1, 1, ACK | PSH, b"data", at=timer, tsecr=recent), now=timer)
    arrive(conn, 1, b"x" * 10, at=1.0, ack=5)  # acknowledges the data; its TSval becomes TS.Recent
    conn.shutdown_write(1.0)
    expect(conn, out(5, 11, ACK | FIN, at=1.0, tsecr=peer_ts(1.0), window=field(10)), now=1.0)


def test_delayed_ack_echoes_the_tsval_of_the_earliest_unacknowledged_segment():
    # RFC 7323 §4.3 (2): "If SEG.TSval >= TS.Recent and SEG.SEQ =< Last.ACK.sent, then SEG.TSval is copied to
    # TS.Recent". Only the first of two segments awaiting one ACK starts at Last.ACK.sent.
    conn = established_ext()
    arrive(conn, 1, b"a" * MSS, at=0.2)
    expect_nothing(conn, now=0.2)  # delayed
    arrive(conn, 1 + MSS, b"b" * MSS, at=0.21)
    expect(conn, out(1, 1 + 2 * MSS, at=0.21, tsecr=peer_ts(0.2), window=field(2 * MSS)), now=0.21)


def test_ack_for_an_out_of_order_segment_echoes_the_last_in_order_tsval_and_the_filler_updates_it():
    # RFC 7323 §4.3 case (C): a segment beyond a hole does not update TS.Recent; the one filling it does.
    conn = established_ext()
    arrive(conn, 101, b"b" * 100, at=0.2)
    expect(conn, out(1, 1, at=0.2, tsecr=peer_ts(T0), sack=((remote_seq(101), remote_seq(201)),)), now=0.2)
    arrive(conn, 1, b"a" * 100, at=0.3)
    expect(conn, out(1, 201, at=0.3, tsecr=peer_ts(0.3), window=field(200)), now=0.3)


def test_equal_tsval_passes_paws_and_a_segment_beyond_last_ack_sent_leaves_ts_recent():
    conn = established_ext()
    arrive(conn, 1, b"a" * 100, at=0.2)  # TS.Recent = peer_ts(0.2)
    conn.handle_timer(0.2 + EXT.delayed_ack)
    expect(conn, out(1, 101, at=0.24, tsecr=peer_ts(0.2), window=field(100)), now=0.24)
    arrive(conn, 101, b"b" * 100, at=0.3, tsval=peer_ts(0.2))  # equal TSvals pass PAWS (not "older")
    arrive(conn, 201, b"c" * 100, at=0.3, tsval=peer_ts(0.3))  # beyond Last.ACK.sent: ignored for TS.Recent
    expect(conn, out(1, 301, at=0.3, tsecr=peer_ts(0.2), window=field(300)), now=0.3)


def test_paws_drops_a_segment_with_an_older_tsval_and_answers_with_an_ack():
    # RFC 7323 §5.3 R1: "If ... SEG.TSval < TS.Recent, TS.Recent is valid, and if the RST bit is not set, then
    # treat the arriving segment as not acceptable: Send an acknowledgment in reply ... and drop the segment."
    conn = established_ext()
    arrive(conn, 1, b"stale", at=0.2, tsval=peer_ts(T0) - 1)
    expect(conn, out(1, 1, at=0.2, tsecr=peer_ts(T0)), now=0.2)
    assert events(conn) == []
    assert conn.rx.rcv_nxt == remote_seq(1)
    assert conn.ts.paws_drops == 1


def test_paws_compares_timestamps_across_the_wrap():
    conn = established_ext()
    arrive(conn, 1, b"a" * 100, at=0.3)  # TSval 0xFFFF_FF00 + 300 wrapped to 44
    assert peer_ts(0.3) == 44
    conn.handle_timer(0.3 + EXT.delayed_ack)
    conn.segments_to_send(0.34)
    arrive(conn, 101, b"old", at=0.4, tsval=0xFFFF_FFF0)  # before the wrap, so older
    expect(conn, out(1, 101, at=0.4, tsecr=44, window=field(100)), now=0.4)
    assert conn.ts.paws_drops == 1


def test_paws_dropped_ack_does_not_acknowledge_our_data():
    conn = established_ext()
    conn.send(b"hello")
    conn.segments_to_send(0.2)
    arrive(conn, 1, at=0.3, ack=6, tsval=peer_ts(0.05), tsecr=our_ts(0.2))
    assert conn.tx.snd_una == local_seq(1)
    expect(conn, out(6, 1, at=0.3, tsecr=peer_ts(T0)), now=0.3)


def test_rst_with_an_older_tsval_is_not_paws_dropped():
    conn = established_ext()
    arrive(conn, 1, flags=RST, at=0.2, tsval=peer_ts(0.0))
    assert conn.state is State.CLOSED
    assert events(conn) == [Reset(), Closed(CloseReason.RESET)]
    assert conn.ts.paws_drops == 0


def test_ts_recent_idle_for_24_days_is_invalid_and_the_next_segment_replaces_it():
    # RFC 7323 §5.5: "an implementation of PAWS include a mechanism to 'invalidate' the TS.Recent value when a
    # connection is idle for more than 24 days". The peer's clock has moved 2**31 ms on, so its TSval looks
    # older; the segment is accepted and, as Linux does (tcp_paws_check), its TSval becomes TS.Recent.
    conn = established_ext()
    later = T0 + 25 * 86400
    arrive(conn, 1, b"a" * 100, at=later)
    arrive(conn, 101, b"b" * 100, at=later)
    expect(conn, out(1, 201, at=later, tsecr=peer_ts(later), window=field(200)), now=later)
    arrive(conn, 201, b"old", at=later, tsval=peer_ts(later - 1.0))  # PAWS protects again
    assert conn.ts.paws_drops == 1


def test_handshake_rtt_is_measured_from_the_echoed_timestamp():
    conn = established_ext()
    assert conn.tx.rtt.srtt == pytest.approx(HANDSHAKE_RTT)


def test_rtt_sample_from_the_echo_of_a_retransmission_follows_the_echoed_time():
    # RFC 7323 §4: the echoed TSval says which transmission an ACK answers, so, unlike Karn's algorithm, a
    # retransmitted segment yields a sample: 50 ms from the retransmission, not 350 ms from the original.
    conn = established_ext()
    conn.send(b"hello")
    conn.segments_to_send(0.2)
    rto = conn.get_timer()
    assert rto == pytest.approx(0.2 + 0.3)  # SRTT 0.1 + 4 * RTTVAR 0.05
    conn.handle_timer(rto)
    conn.segments_to_send(rto)
    arrive(conn, 1, at=rto + 0.05, ack=6, tsecr=our_ts(rto))
    assert conn.tx.rtt.srtt == pytest.approx(7 / 8 * HANDSHAKE_RTT + 1 / 8 * 0.05, abs=1e-3)


def test_an_echo_from_before_the_timeout_gives_no_rtt_sample_and_the_backed_off_rto_stands():
    # The peer got "hello" but its ACK was lost; after our timeout it answers the retransmission (a duplicate)
    # by echoing TS.Recent, the original's TSval (RFC 7323 §4.3). That 350 ms measures the timeout, not the
    # path: taken, every lost ACK would raise the next RTO, and a lossy ACK path would grow it without bound.
    conn = established_ext()
    conn.send(b"hello")
    conn.segments_to_send(0.2)
    rto = conn.get_timer()
    conn.handle_timer(rto)
    conn.segments_to_send(rto)
    backed_off = conn.tx.rtt.rto
    arrive(conn, 1, at=rto + 0.05, ack=6, tsecr=our_ts(0.2))
    assert conn.tx.snd_una == local_seq(6)
    assert conn.tx.rtt.srtt == pytest.approx(HANDSHAKE_RTT)
    assert conn.tx.rtt.rto == backed_off  # Karn: kept until a sample from after the timeout
    conn.send(b"again")
    conn.segments_to_send(rto + 0.1)
    arrive(conn, 1, at=rto + 0.15, ack=11, tsecr=our_ts(rto + 0.1))
    assert conn.tx.rtt.srtt == pytest.approx(7 / 8 * HANDSHAKE_RTT + 1 / 8 * 0.05, abs=1e-3)
    assert conn.tx.rtt.rto < backed_off


def test_every_ack_of_new_data_gives_an_rtt_sample_from_its_echo():
    # RFC 7323 §4.1 (RTTM): the second segment was sent while the first was being timed, so Karn-style timing
    # of one segment per round trip would take no sample from its ACK; its echoed TSval gives 300 ms.
    conn = established_ext()
    conn.send(b"a" * SMSS)
    conn.segments_to_send(0.2)
    conn.send(b"b" * SMSS)
    conn.segments_to_send(0.3)
    arrive(conn, 1, at=0.35, ack=1 + SMSS, tsecr=our_ts(0.2))
    srtt = HANDSHAKE_RTT + (0.15 - HANDSHAKE_RTT) / 8  # RFC 6298 (2.3)
    assert conn.tx.rtt.srtt == pytest.approx(srtt, abs=1e-3)
    arrive(conn, 1, at=0.6, ack=1 + 2 * SMSS, tsecr=our_ts(0.3))
    assert conn.tx.rtt.srtt == pytest.approx(srtt + (0.3 - srtt) / 8, abs=1e-3)


# --- RFC 2018 §4, RFC 2883: SACK and D-SACK generation -----------------------------------------------------


def block(a: int, b: int) -> tuple[int, int]:
    """The SACK block for the peer's bytes [a, b)."""
    return remote_seq(a), remote_seq(b)


def test_out_of_order_segment_is_acked_at_once_with_a_sack_block_for_it():
    conn = established_ext()
    arrive(conn, 101, b"b" * 100, at=0.2)
    expect(conn, out(1, 1, at=0.2, tsecr=peer_ts(T0), sack=(block(101, 201),)), now=0.2)


@pytest.mark.parametrize(("ours_on", "theirs_on"), [(True, False), (False, True)])
def test_sack_is_used_only_when_both_syns_permit_it(ours_on, theirs_on):
    # RFC 2018 §2: SACK-permitted "may be sent in a SYN"; without it on both SYNs no SACK option is sent.
    conn = established_ext(dataclasses.replace(EXT, sack=ours_on), syn_options=peer_syn_options(sack=theirs_on))
    arrive(conn, 101, b"b" * 100, at=0.2)
    expect(conn, out(1, 1, at=0.2, tsecr=peer_ts(T0)), now=0.2)


def test_first_sack_block_holds_the_latest_segment_then_the_others_most_recent_first():
    # RFC 2018 §4: "The first SACK block ... MUST specify the contiguous block of data containing the segment
    # which triggered this ACK"; the others repeat "the most recently reported SACK blocks".
    conn = established_ext()
    recent = peer_ts(T0)
    arrive(conn, 101, b"b" * 100, at=0.2)
    arrive(conn, 301, b"d" * 100, at=0.2)
    arrive(conn, 501, b"f" * 100, at=0.2)
    conn.segments_to_send(0.2)
    arrive(conn, 701, b"h" * 100, at=0.3)
    expect(conn, out(1, 1, at=0.3, tsecr=recent, sack=(block(701, 801), block(501, 601), block(301, 401))), now=0.3)
    arrive(conn, 201, b"c" * 100, at=0.4)  # joins the two oldest blocks
    expect(conn, out(1, 1, at=0.4, tsecr=recent, sack=(block(101, 401), block(701, 801), block(501, 601))), now=0.4)


@pytest.mark.parametrize(("timestamps", "limit"), [(True, 3), (False, 4)])
def test_sack_option_carries_at_most_three_blocks_beside_timestamps_and_four_without(timestamps, limit):
    # RFC 2018 §3: 40 bytes of option space hold 4 blocks; the 12 bytes of timestamps leave room for 3.
    config = dataclasses.replace(EXT, timestamps=timestamps)
    conn = established_ext(config)
    for k in range(5):
        arrive(conn, 101 + 200 * k, b"z" * 100, at=0.2)
    (ack,) = conn.segments_to_send(0.2)[-1:]
    assert ack.options.sack_blocks == tuple(block(901 - 200 * k, 1001 - 200 * k) for k in range(limit))


def test_sack_blocks_shrink_as_holes_fill_and_disappear_when_the_last_fills():
    conn = established_ext()
    arrive(conn, 101, b"b" * 100, at=0.2)
    arrive(conn, 301, b"d" * 100, at=0.2)
    conn.segments_to_send(0.2)
    arrive(conn, 1, b"a" * 100, at=0.3)
    expect(conn, out(1, 201, at=0.3, tsecr=peer_ts(0.3), window=field(200), sack=(block(301, 401),)), now=0.3)
    arrive(conn, 201, b"c" * 100, at=0.4)
    expect(conn, out(1, 401, at=0.4, tsecr=peer_ts(0.4), window=field(400)), now=0.4)


def test_dsack_reports_a_duplicate_below_rcv_nxt_in_the_first_block():
    # RFC 2883 §4: "the first block of the SACK option should be a D-SACK block specifying the sequence numbers
    # for the duplicate segment that triggers the acknowledgement" (example 1: our ACK was lost).
    conn = established_ext()
    arrive(conn, 1, b"a" * 100, at=0.2)
    conn.handle_timer(0.2 + EXT.delayed_ack)
    conn.segments_to_send(0.24)
    arrive(conn, 1, b"a" * 100, at=0.3)  # the peer's retransmission
    # Outside the window, so rejected before TS.Recent is updated (RFC 7323 §5.3 R2 before R3).
    expect(conn, out(1, 101, at=0.3, tsecr=peer_ts(0.2), window=field(100), sack=(block(1, 101),)), now=0.3)
    assert events(conn) == [DataReceived(b"a" * 100)]


def test_dsack_reports_only_the_duplicate_part_of_a_partly_new_segment():
    # RFC 2883 §4 example 4: "The receiver reports only the already received subsegment".
    conn = established_ext()
    arrive(conn, 1, b"a" * 100, at=0.2)
    conn.handle_timer(0.2 + EXT.delayed_ack)
    conn.segments_to_send(0.24)
    arrive(conn, 51, b"a" * 50 + b"b" * 50, at=0.3)
    expect_nothing(conn, now=0.3)  # new data in order: the ACK may be delayed, as Linux does
    conn.handle_timer(0.3 + EXT.delayed_ack)
    expect(conn, out(1, 151, at=0.34, tsecr=peer_ts(0.3), window=field(150), sack=(block(51, 101),)), now=0.34)


def test_dsack_of_out_of_order_data_is_followed_by_the_block_containing_it():
    # RFC 2883 §4 (example 3): "If the duplicate segment is part of a larger block of non-contiguous data in the
    # receiver's data queue, then the following SACK block should be used to specify this larger block."
    conn = established_ext()
    recent = peer_ts(T0)
    arrive(conn, 201, b"c" * 100, at=0.2)
    arrive(conn, 301, b"d" * 100, at=0.2)
    conn.segments_to_send(0.2)
    arrive(conn, 201, b"c" * 100, at=0.3)
    expect(conn, out(1, 1, at=0.3, tsecr=recent, sack=(block(201, 301), block(201, 401))), now=0.3)
    arrive(conn, 501, b"f" * 100, at=0.4)  # the D-SACK was reported once and is gone
    expect(conn, out(1, 1, at=0.4, tsecr=recent, sack=(block(501, 601), block(201, 401))), now=0.4)


# --- loss recovery: SACK with RACK (RFC 8985), duplicate ACKs without (RFC 5681, RFC 3042) ---------------


def data_segments(data: bytes, first: int, count: int, *, at: float, tsecr: int, psh: bool = False) -> list[TcpSegment]:
    """Our segments ``first`` .. ``first + count - 1`` (from 0) of ``data`` cut at SMSS; ``psh`` marks the last
    of them as the end of what was queued."""
    segments = []
    for i in range(first, first + count):
        payload = data[i * SMSS : (i + 1) * SMSS]
        flags = ACK | PSH if psh and i == first + count - 1 else ACK
        segments.append(out(1 + i * SMSS, 1, flags, payload, at=at, tsecr=tsecr))
    return segments


def test_three_sacked_segments_make_us_retransmit_the_first_at_once_before_the_rto():
    # RFC 8985 §6.2: with three segments SACKed (DupThresh) and no reordering seen, RACK.reo_wnd is 0, so the
    # first segment, sent before them and not delivered an RTT later, is lost.
    conn = established_ext()
    data = bytes(i % 251 for i in range(5 * SMSS))
    conn.send(data)
    expect(conn, *data_segments(data, 0, 5, at=T0, tsecr=peer_ts(T0), psh=True), now=T0)
    for k in (2, 3, 4):
        sack = ((local_seq(1 + SMSS), local_seq(1 + k * SMSS)),)
        arrive(conn, 1, at=0.2, tsecr=our_ts(T0), sack=sack)
        if k < 4:
            expect_nothing(conn, now=0.2)
    expect(conn, out(1, 1, ACK, data[:SMSS], at=0.2, tsecr=peer_ts(0.2)), now=0.2)
    assert conn.tx.rto_count == 0
    assert conn.get_timer() > 0.2


def test_sack_only_acks_release_one_new_segment_each_and_leave_cwnd_unchanged():
    # RFC 5681 §3.1: slow start grows cwnd "for each ACK received that cumulatively acknowledges new data";
    # RFC 3042 §2 on the segments sent for the first two duplicate ACKs: "The congestion window (cwnd) MUST NOT
    # be changed". With SACK the pipe (RFC 6675) lets one segment out per segment SACKed, as in Linux, whose
    # tcp_may_raise_cwnd grows cwnd only on in-order delivery.
    conn = established_ext()
    data = bytes(i % 251 for i in range(12 * SMSS))
    conn.send(data)
    expect(conn, *data_segments(data, 0, 10, at=T0, tsecr=peer_ts(T0)), now=T0)
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0), sack=((local_seq(1 + SMSS), local_seq(1 + 2 * SMSS)),))
    expect(conn, *data_segments(data, 10, 1, at=0.2, tsecr=peer_ts(0.2)), now=0.2)
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0), sack=((local_seq(1 + SMSS), local_seq(1 + 3 * SMSS)),))
    expect(conn, *data_segments(data, 11, 1, at=0.2, tsecr=peer_ts(0.2), psh=True), now=0.2)
    assert conn.tx.cc.cwnd == 10 * SMSS
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0), sack=((local_seq(1 + SMSS), local_seq(1 + 4 * SMSS)),))
    expect(conn, out(1, 1, ACK, data[:SMSS], at=0.2, tsecr=peer_ts(0.2)), now=0.2)


def test_without_sack_two_duplicate_acks_release_new_data_and_the_third_a_fast_retransmit():
    # RFC 3042 §2: with unsent data queued, limited transmit sends one new segment for each of the first two
    # duplicate ACKs; RFC 5681 §3.2: the third triggers the fast retransmit of the first segment.
    config = dataclasses.replace(EXT, sack=False)
    conn = established_ext(config, syn_options=peer_syn_options(sack=False))
    data = bytes(i % 251 for i in range(12 * SMSS))
    conn.send(data)
    expect(conn, *data_segments(data, 0, 10, at=T0, tsecr=peer_ts(T0)), now=T0)  # cwnd: IW10
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0))
    expect(conn, out(1 + 10 * SMSS, 1, ACK, data[10 * SMSS : 11 * SMSS], at=0.2, tsecr=peer_ts(0.2)), now=0.2)
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0))
    expect(conn, out(1 + 11 * SMSS, 1, ACK | PSH, data[11 * SMSS :], at=0.2, tsecr=peer_ts(0.2)), now=0.2)
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0))
    expect(conn, out(1, 1, ACK, data[:SMSS], at=0.2, tsecr=peer_ts(0.2)), now=0.2)
    assert conn.tx.rto_count == 0


def test_without_sack_and_nothing_queued_two_duplicate_acks_send_nothing():
    config = dataclasses.replace(EXT, sack=False)
    conn = established_ext(config, syn_options=peer_syn_options(sack=False))
    data = bytes(i % 251 for i in range(4 * SMSS))
    conn.send(data)
    expect(conn, *data_segments(data, 0, 4, at=T0, tsecr=peer_ts(T0), psh=True), now=T0)
    for _ in range(2):
        arrive(conn, 1, at=0.2, tsecr=our_ts(T0))
        expect_nothing(conn, now=0.2)
    arrive(conn, 1, at=0.2, tsecr=our_ts(T0))
    expect(conn, out(1, 1, ACK, data[:SMSS], at=0.2, tsecr=peer_ts(0.2)), now=0.2)


# --- Nagle (RFC 9293 §3.7.4) -------------------------------------------------------------------------------


def test_nagle_holds_a_small_send_while_data_is_unacknowledged():
    conn = established_ext()
    conn.send(b"a" * 100)
    expect(conn, out(1, 1, ACK | PSH, b"a" * 100, at=0.2, tsecr=peer_ts(T0)), now=0.2)
    conn.send(b"b" * 50)
    expect_nothing(conn, now=0.2)
    arrive(conn, 1, at=0.3, ack=101, tsecr=our_ts(0.2))
    expect(conn, out(101, 1, ACK | PSH, b"b" * 50, at=0.3, tsecr=peer_ts(0.3)), now=0.3)


def test_nodelay_sends_a_small_segment_while_data_is_unacknowledged():
    conn = established_ext(dataclasses.replace(EXT, nodelay=True))
    conn.send(b"a" * 100)
    expect(conn, out(1, 1, ACK | PSH, b"a" * 100, at=0.2, tsecr=peer_ts(T0)), now=0.2)
    conn.send(b"b" * 50)
    expect(conn, out(101, 1, ACK | PSH, b"b" * 50, at=0.2, tsecr=peer_ts(T0)), now=0.2)


def test_fin_releases_the_tail_held_by_nagle():
    conn = established_ext()
    conn.send(b"a" * 100)
    conn.segments_to_send(0.2)
    conn.send(b"b" * 50)
    expect_nothing(conn, now=0.2)
    conn.shutdown_write(0.2)
    expect(conn, out(101, 1, ACK | PSH | FIN, b"b" * 50, at=0.2, tsecr=peer_ts(T0)), now=0.2)


def test_nagle_lets_full_segments_go_and_holds_only_the_short_tail():
    conn = established_ext()
    conn.send(b"a" * 100)
    conn.segments_to_send(0.2)
    data = bytes(i % 253 for i in range(SMSS + 10))
    conn.send(data)
    expect(conn, out(101, 1, ACK, data[:SMSS], at=0.2, tsecr=peer_ts(T0)), now=0.2)


# --- zero windows (RFC 9293 §3.8.6) ------------------------------------------------------------------------


def test_zero_window_probe_answered_with_an_open_window_resumes_sending():
    conn = established_ext(peer_window=0)
    conn.send(b"wait")
    expect_nothing(conn, now=T0)
    probe_at = conn.get_timer()
    conn.handle_timer(probe_at)
    # The probe (an old sequence number, as Linux sends) carries timestamps too.
    expect(conn, out(0, 1, at=probe_at, tsecr=peer_ts(T0)), now=probe_at)
    answer_at = probe_at + 0.1
    arrive(conn, 1, at=answer_at, window=1, tsecr=our_ts(probe_at))  # 1 << 7 = 128 bytes
    expect(conn, out(1, 1, ACK | PSH, b"wait", at=answer_at, tsecr=peer_ts(answer_at)), now=answer_at)


def test_reader_draining_a_full_receive_buffer_sends_a_window_update_at_once():
    config = dataclasses.replace(EXT, receive_buffer=4 * MSS)  # 5840: no scaling needed
    conn = established_ext(config)
    conn.pause_reading()
    for k in range(4):
        arrive(conn, 1 + k * MSS, bytes([k]) * MSS, at=0.2)
    acks = conn.segments_to_send(0.2)
    assert acks[-1] == out(1, 1 + 4 * MSS, at=0.2, tsecr=peer_ts(0.2), window=0)
    conn.resume_reading()
    assert [len(e.data) for e in events(conn)] == [4 * MSS]
    # RFC 9293 §3.8.6.2.2: the whole buffer is free again, well past min(RCV.BUFF / 2, Eff.snd.MSS).
    expect(conn, out(1, 1 + 4 * MSS, at=0.3, tsecr=peer_ts(0.2), window=4 * MSS), now=0.3)


def test_reading_a_small_segment_sends_no_window_update():
    # RFC 9293 §3.8.6.2.2 (receiver SWS avoidance): the right edge moves only once it can move by
    # min(RCV.BUFF / 2, Eff.snd.MSS); reading 10 bytes frees too little, so only the delayed ACK follows.
    conn = established_ext()
    arrive(conn, 1, b"x" * 10, at=0.2)
    assert events(conn) == [DataReceived(b"x" * 10)]
    expect_nothing(conn, now=0.2)
    conn.handle_timer(0.2 + EXT.delayed_ack)
    expect(conn, out(1, 11, at=0.24, tsecr=peer_ts(0.2)), now=0.24)


# --- slow start (RFC 5681 §3.1, RFC 6928, RFC 3465) --------------------------------------------------------


def test_initial_window_is_ten_segments():
    conn = established_ext(peer_window=1024)  # 128 KiB: only cwnd limits
    data = bytes(i % 249 for i in range(30 * SMSS))
    conn.send(data)
    expect(conn, *data_segments(data, 0, 10, at=T0, tsecr=peer_ts(T0)), now=T0)
    assert conn.tx.cc.cwnd == 10 * SMSS


@pytest.mark.parametrize("algorithm", ["reno", "cubic"])
def test_slow_start_grows_cwnd_by_two_segments_for_each_ack_of_two(algorithm):
    conn = established_ext(dataclasses.replace(EXT, congestion_control=algorithm), peer_window=1024)
    data = bytes(i % 249 for i in range(30 * SMSS))
    conn.send(data)
    conn.segments_to_send(T0)
    for k in (1, 2, 3):
        arrive(conn, 1, at=0.2, ack=1 + 2 * k * SMSS, tsecr=our_ts(T0))
        assert conn.tx.cc.cwnd == (10 + 2 * k) * SMSS
        # two segments left the network and cwnd grew by two: four go out
        expect(conn, *data_segments(data, 10 + 4 * (k - 1), 4, at=0.2, tsecr=peer_ts(0.2)), now=0.2)


def test_reno_slow_start_counts_at_most_two_segments_per_ack():
    # RFC 3465 §2.2 (ABC): slow start grows cwnd by the bytes acknowledged, at most L = 2 SMSS per ACK, so an ACK
    # of three segments grows it by two. (CUBIC's HyStart++ allows L = 8 unpaced: RFC 9406 §4.3.)
    conn = established_ext(dataclasses.replace(EXT, congestion_control="reno"), peer_window=1024)
    conn.send(bytes(30 * SMSS))
    conn.segments_to_send(T0)
    arrive(conn, 1, at=0.2, ack=1 + 3 * SMSS, tsecr=our_ts(T0))
    assert conn.tx.cc.cwnd == 12 * SMSS
