"""The Host: demultiplexing, listeners, the policies for strangers, and what it does with bad input."""

import pytest

from stack.host import Host
from stack.seq import seq_add
from stack.tcp.errors import LocalProtocolError
from stack.tcp.events import Closed, CloseReason, DataReceived, Established, PeerClosed
from stack.tcp.state import State
from stack.testing import LinkFaults, Network
from stack.wire import ACK, FIN, RST, SYN, TcpOptions, TcpSegment, build_tcp_packet, parse_ip, parse_tcp

US, THEM = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])


def host(**kw) -> Host:
    return Host(["10.0.0.2", "fd00::2"], secret=b"s" * 16, **kw)


def packet(seg: TcpSegment, src: bytes = THEM, dst: bytes = US) -> bytes:
    return build_tcp_packet(seg, src, dst)


def replies(h: Host, now: float = 0.0) -> list[TcpSegment]:
    out = []
    for raw in h.packets_to_send(now):
        ip = parse_ip(raw)
        out.append(parse_tcp(ip.payload, ip.src, ip.dst))
    return out


def test_segment_for_no_connection_gets_rst_at_seg_ack():
    h = host()
    h.receive_packet(packet(TcpSegment(40000, 80, 1000, 5555, ACK, 100, b"data")), 0.0)
    assert replies(h) == [TcpSegment(80, 40000, 5555, 0, RST, 0)]


def test_syn_to_closed_port_gets_rst_ack_covering_the_syn():
    h = host()
    h.receive_packet(packet(TcpSegment(40000, 81, 1000, 0, SYN, 100)), 0.0)
    assert replies(h) == [TcpSegment(81, 40000, 0, 1001, RST | ACK, 0)]


def test_rst_for_no_connection_is_not_answered():
    h = host()
    h.receive_packet(packet(TcpSegment(40000, 80, 1000, 0, RST, 0)), 0.0)
    assert replies(h) == []


def test_unmatched_policy_replaces_the_rst():
    seen = []
    h = host(unmatched=lambda hst, pkt, seg, now: seen.append((pkt.src, seg.dst_port)))
    h.receive_packet(packet(TcpSegment(40000, 80, 1000, 5555, ACK, 100)), 0.0)
    assert replies(h) == [] and seen == [(THEM, 80)]


def test_isn_policy_is_used_for_passive_opens():
    h = host(isn_source=lambda la, lp, ra, rp, now: 0xFFFFFFF0)
    h.listen(80)
    h.receive_packet(packet(TcpSegment(40000, 80, 1000, 0, SYN, 100, options=TcpOptions(mss=1460))), 0.0)
    (syn_ack,) = replies(h)
    assert syn_ack.flags == SYN | ACK and syn_ack.seq == 0xFFFFFFF0 and syn_ack.ack == 1001


def test_syn_ack_advertises_an_mss_that_fits_the_mtu_in_each_family():
    h = host(mtu=1400)
    h.listen(80)
    h.receive_packet(packet(TcpSegment(40000, 80, 1, 0, SYN, 100)), 0.0)
    v6_them, v6_us = bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02")
    h.receive_packet(packet(TcpSegment(40000, 80, 1, 0, SYN, 100), v6_them, v6_us), 0.0)
    assert sorted(s.options.mss for s in replies(h)) == [1340, 1360]  # MUST-67: MTU - IP - TCP headers


def test_full_backlog_without_syn_cookies_drops_syns_and_counts_them():
    h = host(syn_cookies=False)
    h.listen(80, backlog=2)
    for port in (40001, 40002, 40003):
        h.receive_packet(packet(TcpSegment(port, 80, 1, 0, SYN, 100)), 0.0)
    assert len(replies(h)) == 2
    assert h.drops["listen_overflow"] == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "bad_ip"),
        (b"\x45" + b"\x00" * 10, "bad_ip"),
        (packet(TcpSegment(1, 80, 1, 0, SYN, 1), dst=bytes([10, 9, 9, 9])), "not_our_address"),
        (packet(TcpSegment(1, 80, 1, 0, SYN, 1), src=bytes([224, 0, 0, 1])), "bad_source"),
        (packet(TcpSegment(1, 80, 1, 0, SYN, 1, b"x"))[:-1] + b"y", "bad_tcp"),
    ],
)
def test_bad_input_is_dropped_and_counted_never_raised(data, reason):
    h = host()
    h.listen(80)
    h.receive_packet(data, 0.0)
    assert h.drops[reason] == 1
    assert replies(h) == []


def test_corrupted_checksum_is_dropped():
    raw = bytearray(packet(TcpSegment(40000, 80, 1000, 5555, ACK, 100, b"data")))
    raw[-1] ^= 0x01
    h = host()
    h.receive_packet(bytes(raw), 0.0)
    assert h.drops["bad_tcp"] == 1 and replies(h) == []


def test_connect_to_multicast_is_refused_with_a_clear_error():
    with pytest.raises(LocalProtocolError, match="not a unicast address"):
        host().connect("224.0.0.1", 80, 0.0)


def test_ephemeral_ports_do_not_collide_towards_one_peer():
    h = host()
    ports = {h.connect("10.0.0.1", 80, 0.0).local_port for _ in range(500)}
    assert len(ports) == 500 and all(49152 <= p < 65536 for p in ports)


def two_hosts(faults: LinkFaults | None = None):
    net = Network(seed=1)
    log: dict[str, list] = {"a": [], "b": []}
    a = net.add_host("a", Host(["10.0.0.1"], secret=b"a" * 16), app=lambda h, c, e: log["a"].append((c, e)))
    b = net.add_host("b", Host(["10.0.0.2"], secret=b"b" * 16), app=lambda h, c, e: log["b"].append((c, e)))
    net.connect("a", "b", faults)
    return net, a, b, log


def test_simultaneous_close_ends_both_sides_in_time_wait_then_closed():
    net, a, b, log = two_hosts()
    b.listen(80)
    ca = a.connect("10.0.0.2", 80, 0.0)
    net.run(until=lambda: any(isinstance(e, Established) for _, e in log["b"]))
    cb = log["b"][0][0]
    ca.shutdown_write(net.now)
    cb.shutdown_write(net.now)
    net.flush()
    net.run(until=lambda: ca.state is State.TIME_WAIT and cb.state is State.TIME_WAIT, max_time=5)
    assert ca.state is State.TIME_WAIT and cb.state is State.TIME_WAIT  # both passed through CLOSING
    net.run()
    assert ca.close_reason is CloseReason.NORMAL and cb.close_reason is CloseReason.NORMAL
    assert a.connections == {} and b.connections == {}


def test_half_close_lets_the_other_side_keep_sending():
    net, a, b, log = two_hosts()
    b.listen(80)
    ca = a.connect("10.0.0.2", 80, 0.0)
    net.run(until=lambda: any(isinstance(e, Established) for _, e in log["b"]))
    cb = log["b"][0][0]
    ca.shutdown_write(net.now)
    net.run(until=lambda: any(isinstance(e, PeerClosed) for _, e in log["b"]), max_time=5)
    cb.send(b"still talking")
    cb.shutdown_write(net.now)
    net.run()
    assert b"".join(e.data for _, e in log["a"] if isinstance(e, DataReceived)) == b"still talking"
    assert [e for _, e in log["a"] if isinstance(e, Closed)] == [Closed(CloseReason.NORMAL)]


def test_connecting_to_a_closed_port_is_refused():
    net, a, _, _ = two_hosts()
    ca = a.connect("10.0.0.2", 80, 0.0)
    net.run(max_time=5)
    assert ca.close_reason is CloseReason.REFUSED


def test_embryonic_connection_that_dies_is_never_shown_to_the_application():
    h = host()
    h.listen(80)
    h.receive_packet(packet(TcpSegment(40000, 80, 1000, 0, SYN, 100)), 0.0)
    h.packets_to_send(0.0)
    h.receive_packet(packet(TcpSegment(40000, 80, 1001, 0, RST, 0)), 0.0)
    h.packets_to_send(0.0)
    assert h.next_event() is None
    assert h.listeners[(None, 80)].pending == 0 and h.connections == {}


def test_new_syn_reopens_a_connection_in_time_wait():
    """RFC 9293 §3.6.1 (MAY-2): a SYN beyond the old incarnation's sequence space replaces TIME-WAIT."""
    h = host()
    h.listen(80)
    h.receive_packet(packet(TcpSegment(40000, 80, 1000, 0, SYN, 100)), 0.0)
    (syn_ack,) = replies(h)
    iss = syn_ack.seq
    h.receive_packet(packet(TcpSegment(40000, 80, 1001, seq_add(iss, 1), ACK, 100)), 0.0)
    conn, _ = h.next_event()
    conn.close(0.0)  # we close first, so we end in TIME-WAIT
    (fin,) = replies(h)
    assert fin.flags & FIN
    h.receive_packet(packet(TcpSegment(40000, 80, 1001, seq_add(iss, 2), ACK | FIN, 100)), 0.0)
    replies(h)
    assert conn.state is State.TIME_WAIT
    h.receive_packet(packet(TcpSegment(40000, 80, 90_000, 0, SYN, 100)), 1.0)
    (new_syn_ack,) = replies(h, 1.0)
    assert new_syn_ack.flags == SYN | ACK and new_syn_ack.ack == 90_001
    assert conn.state is State.CLOSED


def test_the_host_wide_connection_limit_drops_syns_and_refuses_connects_with_the_fix():
    h = host(max_connections=3)
    h.listen(80)
    for port in (40001, 40002, 40003, 40004):
        h.receive_packet(packet(TcpSegment(port, 80, 1, 0, SYN, 100)), 0.0)
    assert len(replies(h)) == 3 and len(h.connections) == 3
    assert h.drops["connection_limit"] == 1
    with pytest.raises(LocalProtocolError, match=r"max_connections=3 connections: close some, or raise the limit"):
        h.connect("10.0.0.1", 9, 0.0)


def test_a_listeners_connection_limit_counts_its_open_connections_and_frees_a_place_when_one_goes():
    h = host()
    h.listen(80, max_connections=2)
    h.listen(81)
    for port in (40001, 40002, 40003):
        h.receive_packet(packet(TcpSegment(port, 80, 1, 0, SYN, 100)), 0.0)
    h.receive_packet(packet(TcpSegment(40009, 81, 1, 0, SYN, 100)), 0.0)  # another listener: not limited
    assert len(h.connections) == 3 and h.drops["listener_connection_limit"] == 1
    replies(h)
    h.receive_packet(packet(TcpSegment(40001, 80, 2, 0, RST, 100)), 0.1)  # one goes
    replies(h, 0.1)  # (the host lets go of closed connections when it next sends)
    assert (US, 80, THEM, 40001) not in h.connections
    h.receive_packet(packet(TcpSegment(40003, 80, 1, 0, SYN, 100)), 0.2)
    assert (US, 80, THEM, 40003) in h.connections
