"""ICMP errors reach the connection whose segment they quote (RFC 9293 §3.9.2.2, RFC 5927, RFC 1191/8201)."""

import pytest

from stack.host import Host
from stack.seq import seq_add
from stack.tcp.config import TcpConfig
from stack.tcp.events import Closed, CloseReason, SoftError
from stack.tcp.state import State
from stack.wire import (
    ACK,
    PROTO_ICMP,
    PROTO_ICMPV6,
    SYN,
    IcmpMessage,
    TcpOptions,
    TcpSegment,
    build_icmp,
    build_ip,
    build_tcp_packet,
    parse_ip,
    parse_tcp,
)

US4, PEER4, ROUTER4 = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]), bytes([10, 0, 0, 254])
US6, PEER6 = bytes.fromhex("fd00" + "00" * 13 + "02"), bytes.fromhex("fd00" + "00" * 13 + "01")
CONFIG = TcpConfig(timestamps=False, sack=False, window_scaling=False)


def icmp_about(segment_packet: bytes, *, version: int, type_: int, code: int, rest: int = 0) -> bytes:
    """An ICMP error from a router, quoting the start of one of our packets."""
    quoted = segment_packet[: 28 if version == 4 else 48]
    msg = IcmpMessage(version, type_, code, rest, quoted)
    if version == 4:
        return build_ip(ROUTER4, US4, PROTO_ICMP, build_icmp(msg))
    router6 = bytes.fromhex("fd00" + "00" * 13 + "fe")
    return build_ip(router6, US6, PROTO_ICMPV6, build_icmp(msg, router6, US6))


def segments(raws):
    out = []
    for raw in raws:
        ip = parse_ip(raw)
        out.append(parse_tcp(ip.payload, ip.src, ip.dst))
    return out


def established(version=4):
    us, peer = (US4, PEER4) if version == 4 else (US6, PEER6)
    host = Host(["10.0.0.2", "fd00::2"], secret=b"s" * 16, config=CONFIG)
    conn = host.connect(peer, 80, 0.0)
    (syn_packet,) = host.packets_to_send(0.0)
    syn = segments([syn_packet])[0]
    host.receive_packet(
        build_tcp_packet(
            TcpSegment(80, syn.src_port, 5000, seq_add(syn.seq, 1), SYN | ACK, 65535, options=TcpOptions(mss=1460)),
            peer,
            us,
        ),
        0.01,
    )
    host.packets_to_send(0.01)
    assert conn.state is State.ESTABLISHED
    while host.next_event():
        pass
    return host, conn


def test_fragmentation_needed_lowers_the_mss_and_resends_in_smaller_segments():
    host, conn = established()
    conn.send(b"p" * 3000)
    sent = host.packets_to_send(0.02)
    assert [len(s.payload) for s in segments(sent)] == [1460, 1460]
    host.receive_packet(icmp_about(sent[0], version=4, type_=3, code=4, rest=1200), 0.03)
    again = segments(host.packets_to_send(0.03))
    assert conn.tx.eff_mss == 1200 - 40
    assert again and all(len(s.payload) <= 1160 for s in again)
    assert again[0].seq == segments(sent)[0].seq  # the first byte goes again, in a smaller segment
    assert conn.info().timeouts == 0 and conn.state is State.ESTABLISHED


def test_packet_too_big_below_1280_is_taken_as_1280_for_ipv6():
    host, conn = established(version=6)
    conn.send(b"p" * 1000)
    sent = host.packets_to_send(0.02)
    host.receive_packet(icmp_about(sent[0], version=6, type_=2, code=0, rest=500), 0.03)
    assert conn.tx.eff_mss == 1280 - 60


def test_icmp_quoting_a_sequence_number_we_never_sent_is_ignored():
    """RFC 5927 §4.1: a blind attacker who guesses the 4-tuple but not the sequence number gets nowhere."""
    host, conn = established()
    conn.send(b"p" * 100)
    (sent,) = host.packets_to_send(0.02)
    forged = bytearray(sent)
    forged[24:28] = (int.from_bytes(forged[24:28], "big") ^ 0x40000000).to_bytes(4, "big")
    host.receive_packet(icmp_about(bytes(forged), version=4, type_=3, code=4, rest=600), 0.03)
    assert conn.tx.eff_mss == 1460
    assert host.drops["icmp_out_of_window"] == 1


@pytest.mark.parametrize(("code", "reason"), [(3, CloseReason.REFUSED), (2, CloseReason.UNREACHABLE)])
def test_hard_error_during_the_handshake_ends_the_connection(code, reason):
    host = Host(["10.0.0.2"], secret=b"s" * 16, config=CONFIG)
    conn = host.connect(PEER4, 80, 0.0)
    (syn,) = host.packets_to_send(0.0)
    host.receive_packet(icmp_about(syn, version=4, type_=3, code=code), 0.01)
    host.packets_to_send(0.01)
    assert conn.state is State.CLOSED and conn.close_reason is reason


def test_must_56_soft_error_during_the_handshake_is_reported_but_does_not_abort():
    host = Host(["10.0.0.2"], secret=b"s" * 16, config=CONFIG)
    conn = host.connect(PEER4, 80, 0.0)
    (syn,) = host.packets_to_send(0.0)
    host.receive_packet(icmp_about(syn, version=4, type_=3, code=1), 0.01)  # host unreachable
    assert conn.state is State.SYN_SENT
    assert conn.next_event() == SoftError("host unreachable")


def test_port_unreachable_on_an_established_connection_is_only_a_soft_error():
    """RFC 5927 §5.2: in synchronized states hard errors are treated as soft ones."""
    host, conn = established()
    conn.send(b"p" * 10)
    (sent,) = host.packets_to_send(0.02)
    host.receive_packet(icmp_about(sent, version=4, type_=3, code=3), 0.03)
    assert conn.state is State.ESTABLISHED
    assert host.next_event() == (conn, SoftError("port unreachable"))


def test_must_55_source_quench_is_silently_discarded():
    host, conn = established()
    conn.send(b"p" * 10)
    (sent,) = host.packets_to_send(0.02)
    cwnd = conn.tx.cc.cwnd
    host.receive_packet(icmp_about(sent, version=4, type_=4, code=0), 0.03)
    assert host.next_event() is None and conn.tx.cc.cwnd == cwnd


def test_icmp_for_no_connection_goes_to_the_unmatched_policy():
    seen = []
    host = Host(["10.0.0.2"], secret=b"s" * 16, unmatched_icmp=lambda h, p, m, q, now: seen.append(q.seq))
    stray = build_tcp_packet(TcpSegment(40000, 80, 77, 0, ACK, 100), US4, PEER4)
    host.receive_packet(icmp_about(stray, version=4, type_=3, code=4, rest=1000), 0.0)
    assert seen == [77]


def test_echo_request_and_garbage_icmp_are_counted_not_raised():
    host = Host(["10.0.0.2"], secret=b"s" * 16)
    host.receive_packet(build_ip(PEER4, US4, PROTO_ICMP, build_icmp(IcmpMessage(4, 8, 0, 0, b"ping"))), 0.0)
    host.receive_packet(build_ip(PEER4, US4, PROTO_ICMP, b"\x03\x04"), 0.0)
    assert host.drops["icmp_not_error"] == 1 and host.drops["bad_icmp"] == 1


def test_events_of_a_connection_closed_by_icmp_end_with_closed():
    host = Host(["10.0.0.2"], secret=b"s" * 16, config=CONFIG)
    conn = host.connect(PEER4, 80, 0.0)
    (syn,) = host.packets_to_send(0.0)
    host.receive_packet(icmp_about(syn, version=4, type_=3, code=3), 0.01)
    assert [(c, e) for c, e in iter(host.next_event, None)][-1] == (conn, Closed(CloseReason.REFUSED))
