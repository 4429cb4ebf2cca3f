"""SYN cookies (RFC 4987 §3.6): what a cookie encodes and checks, a host that answers a full backlog with them and
rebuilds the connection from the returning ACK, and real handshakes and transfers through them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.host import Host
from stack.seq import SEQ_MASK, seq_add
from stack.tcp.events import DataReceived, Established
from stack.tcp.state import State
from stack.tcp.syncookie import (
    MSS_TABLE,
    MSS_TABLE_V6,
    PERIOD,
    SynCookies,
    options_from_timestamp,
    timestamp_with_options,
)
from stack.testing import BulkEndpoint, LinkFaults, Network
from stack.wire import ACK, PSH, RST, SYN, TcpOptions, TcpSegment, build_tcp_packet
from tests.test_host import replies

US, THEM = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])
SECRET = b"k" * 32
u32 = st.integers(0, SEQ_MASK)
ports = st.integers(1, 65535)


@given(lport=ports, rport=ports, client_isn=u32, mss=st.integers(1, 9000), now=st.floats(0, 1e6))
def test_a_cookie_returns_its_mss_for_two_periods_and_only_to_its_own_ack(lport, rport, client_isn, mss, now):
    cookies = SynCookies(SECRET)
    cookie = cookies.make(US, lport, THEM, rport, client_isn, mss, now)
    ack_seq, ack = seq_add(client_isn, 1), seq_add(cookie, 1)
    expected = max((v for v in MSS_TABLE if v <= mss), default=MSS_TABLE[0])
    assert cookies.check(US, lport, THEM, rport, ack_seq, ack, now) == expected
    assert cookies.check(US, lport, THEM, rport, ack_seq, ack, now + PERIOD) == expected
    assert cookies.check(US, lport, THEM, rport, ack_seq, ack, now + 2 * PERIOD + 1) is None  # expired
    assert cookies.check(US, lport, THEM, rport, seq_add(ack_seq, 1), ack, now) is None  # another client ISN
    assert cookies.check(US, lport ^ 1, THEM, rport, ack_seq, ack, now) is None  # another 4-tuple
    assert SynCookies(b"x" * 32).check(US, lport, THEM, rport, ack_seq, ack, now) is None  # another secret


@pytest.mark.parametrize(("local", "offered", "kept"), [(US, 9000, 1460), (US, 1000, 536), (bytes(16), 9000, 8940)])
def test_the_mss_is_kept_to_the_step_of_its_family_at_or_below_the_offer(local, offered, kept):
    cookies = SynCookies(SECRET)
    cookie = cookies.make(local, 80, THEM if len(local) == 4 else bytes(15) + b"\x01", 4000, 7, offered, 0.0)
    remote = THEM if len(local) == 4 else bytes(15) + b"\x01"
    assert cookies.check(local, 80, remote, 4000, 8, seq_add(cookie, 1), 0.0) == kept
    assert kept in (MSS_TABLE if len(local) == 4 else MSS_TABLE_V6)


@given(start=u32, span_bits=st.integers(20, 32), client_isn=u32, now=st.floats(0, 1e6))
def test_cookies_stay_in_their_range(start, span_bits, client_isn, now):
    cookies = SynCookies(SECRET, start=start, span=1 << span_bits)
    cookie = cookies.make(US, 80, THEM, 4000, client_isn, 1460, now)
    assert (cookie - start) & SEQ_MASK < 1 << span_bits
    assert cookies.mac_bits == min(24, span_bits - 4)


def test_a_range_too_small_for_a_mac_is_refused():
    with pytest.raises(ValueError, match="too few bits"):
        SynCookies(SECRET, span=1 << 19)


def syn(port: int, isn: int) -> bytes:
    return build_tcp_packet(TcpSegment(port, 80, isn, 0, SYN, 65535, options=TcpOptions(mss=1460)), THEM, US)


def test_a_full_backlog_answers_with_a_cookie_keeps_nothing_and_the_ack_opens_the_connection():
    h = Host(["10.0.0.2"], secret=SECRET)
    h.listen(80, backlog=1)
    h.receive_packet(syn(40000, 1000), 0.0)  # a half-open connection fills the backlog
    replies(h)
    h.receive_packet(syn(40001, 5000), 1.0)
    (reply,) = replies(h, 1.0)
    assert reply.flags == SYN | ACK and reply.ack == 5001 and reply.options.mss == 1460
    assert len(h.connections) == 1 and h.drops["listen_overflow"] == 1  # nothing kept for the cookie
    ack = TcpSegment(40001, 80, 5001, seq_add(reply.seq, 1), ACK | PSH, 65535, b"hello")
    h.receive_packet(build_tcp_packet(ack, THEM, US), 1.5)
    conn = h.connections[(US, 80, THEM, 40001)]
    assert conn.state is State.ESTABLISHED and conn.tx.eff_mss == 1460
    events = [h.next_event(), h.next_event()]
    assert isinstance(events[0][1], Established) and events[1][1] == DataReceived(b"hello")
    assert h.syn_cookies.accepted == 1


def test_an_ack_with_a_wrong_cookie_is_reset_like_any_stranger():
    h = Host(["10.0.0.2"], secret=SECRET)
    h.listen(80, backlog=1)
    h.receive_packet(syn(40000, 1000), 0.0)
    h.receive_packet(syn(40001, 5000), 0.0)
    reply = replies(h)[-1]
    forged = TcpSegment(40001, 80, 5001, seq_add(reply.seq, 2), ACK, 65535)
    h.receive_packet(build_tcp_packet(forged, THEM, US), 0.5)
    (rst,) = replies(h, 0.5)
    assert rst.flags & RST and (US, 80, THEM, 40001) not in h.connections


def test_cookies_are_only_checked_while_a_listener_overflows():
    h = Host(["10.0.0.2"], secret=SECRET)
    h.listen(80, backlog=1)
    client_isn = 5000
    cookie = h.syn_cookies.make(US, 80, THEM, 40001, client_isn, 1460, 0.0)  # a guessed cookie, no overflow
    h.receive_packet(build_tcp_packet(TcpSegment(40001, 80, 5001, seq_add(cookie, 1), ACK, 65535), THEM, US), 0.0)
    assert (US, 80, THEM, 40001) not in h.connections and h.syn_cookies.accepted == 0


def test_real_clients_complete_handshakes_and_transfers_through_cookies():
    """A server whose backlog one silent half-open connection fills: three real clients still get through, on a
    lossy link, each moving 200 kB each way byte-exact, with the MSS, window scaling, SACK and timestamps they
    offered (the cookie and its timestamp kept them)."""
    net = Network(seed="cookies")
    server = Host(["10.0.0.2"], secret=SECRET)
    server.listen(80, backlog=1)
    server.receive_packet(syn(1, 1), 0.0)  # never completed: the backlog stays full
    ends = {}
    net.add_host("server", server, app=lambda h, c, e: ends[("s", c.remote_port)].on_event(c, e, net.now))
    for i in range(3):
        name = f"client{i}"
        client = Host([f"10.0.0.{10 + i}"], secret=bytes([i]) * 16)
        payload = bytes([i]) * 200_000
        ends[(name, None)] = BulkEndpoint(payload)
        net.add_host(name, client, app=lambda h, c, e, n=name: ends[(n, None)].on_event(c, e, net.now))
        net.connect(name, "server", LinkFaults(loss=0.02, delay=0.01))
        conn = client.connect("10.0.0.2", 80, 0.0)
        ends[("s", conn.local_port)] = BulkEndpoint(bytes([100 + i]) * 200_000)
    net.run(until=lambda: all(e.closed is not None for e in ends.values()), max_time=600)
    for (side, _), end in ends.items():
        if side == "s":
            assert end.received == 200_000 and end.conn.passive
            assert end.conn.wscale_ok and end.conn.tx.sack_ok and end.conn.ts.enabled
        else:
            assert end.received == 200_000
    assert server.syn_cookies.accepted == 3 and server.drops["listen_overflow"] >= 3


@given(clock=u32, window_scale=st.none() | st.integers(0, 14), sack=st.booleans())
def test_options_ride_in_the_timestamp_never_ahead_of_the_clock(clock, window_scale, sack):
    value = timestamp_with_options(clock, window_scale, sack)
    assert options_from_timestamp(value) == (window_scale, sack)
    assert 0 <= (clock - value) & SEQ_MASK < 64  # at most one step behind: later TSvals never go backwards


def test_a_client_without_timestamps_gets_no_window_scaling_or_sack_through_a_cookie():
    h = Host(["10.0.0.2"], secret=SECRET)
    h.listen(80, backlog=1)
    h.receive_packet(syn(40000, 1000), 0.0)
    replies(h)
    options = TcpOptions(mss=1460, window_scale=7, sack_permitted=True)  # but no timestamps
    h.receive_packet(build_tcp_packet(TcpSegment(40001, 80, 5000, 0, SYN, 65535, options=options), THEM, US), 0.0)
    (reply,) = replies(h)
    assert reply.options.window_scale is None and not reply.options.sack_permitted
    h.receive_packet(build_tcp_packet(TcpSegment(40001, 80, 5001, seq_add(reply.seq, 1), ACK, 65535), THEM, US), 0.1)
    conn = h.connections[(US, 80, THEM, 40001)]
    assert conn.state is State.ESTABLISHED and not conn.wscale_ok and not conn.tx.sack_ok


def test_a_wrong_cookie_in_the_clocks_first_period_is_refused_not_raised():
    """Found by the atheris campaign: checking the period before the first one (a clock that starts at 0, as the
    simulated network's does) packed a negative counter and raised."""
    cookies = SynCookies(SECRET)
    wrong_period = seq_add(0, 1 + (3 << 2))  # counter bits 3: only the "previous" period, -1, could match
    assert cookies.check(US, 80, THEM, 4000, 1, wrong_period, 1.0) is None
    assert cookies.rejected == 1
