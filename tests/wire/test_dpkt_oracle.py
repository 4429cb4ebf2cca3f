"""dpkt as an independent oracle: what both parsers accept they read alike; each reads what the other builds.

dpkt verifies no checksum and tolerates bad lengths, so agreement is only asked where we accept; it recomputes
a checksum that is zero, which makes it an oracle for the checksums we write.
"""

import struct

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    OPT_MSS,
    OPT_NOP,
    PROTO_TCP,
    TcpOptions,
    WireError,
    build_options,
    build_tcp_packet,
    internet_checksum,
    parse_ip,
    parse_options,
    parse_tcp,
)

from .strategies import ADDRESS_PAIR, IPV4_ADDRESS, IPV6_ADDRESS, U8, U16, U32, UNKNOWN_KIND, tcp_segments


def options_as_dpkt_reads_them(raw: bytes) -> TcpOptions | None:
    """dpkt.tcp.parse_opts' list, read with our rules; None where dpkt itself gives up."""
    mss = window_scale = timestamps = None
    sack_permitted = False
    sack_blocks: tuple = ()
    unknown = []
    for item in dpkt.tcp.parse_opts(raw):
        if item is None:
            return None
        kind, data = item
        if kind == 0:
            break  # dpkt reads on past EOL; RFC 9293 §3.2 ends the list there
        if kind == OPT_NOP:
            continue
        if kind == OPT_MSS and len(data) == 2:
            mss = int.from_bytes(data, "big")
        elif kind == 3 and len(data) == 1:
            window_scale = min(data[0], 14)
        elif kind == 4 and not data:
            sack_permitted = True
        elif kind == 8 and len(data) == 8:
            timestamps = struct.unpack("!II", data)
        elif kind == 5 and data and len(data) % 8 == 0 and len(data) <= 32:
            edges = struct.unpack(f"!{len(data) // 4}I", data)
            sack_blocks = tuple(zip(edges[::2], edges[1::2]))
        elif kind not in (2, 3, 4, 5, 8):
            unknown.append((kind, data))
    return TcpOptions(mss, window_scale, sack_permitted, sack_blocks, timestamps, tuple(unknown))


def dpkt_options(opts: TcpOptions) -> dict:
    """The options dpkt sees, in the TcpOptions shape, for comparing field by field."""
    return {
        "mss": opts.mss,
        "window_scale": opts.window_scale,
        "sack_permitted": opts.sack_permitted,
        "sack_blocks": opts.sack_blocks,
        "timestamps": opts.timestamps,
        "unknown": opts.unknown,
    }


def assert_tcp_fields_agree(ours, theirs) -> None:
    assert (ours.src_port, ours.dst_port, ours.seq, ours.ack) == (
        theirs.sport,
        theirs.dport,
        theirs.seq,
        theirs.ack,
    )
    assert (ours.flags, ours.window, ours.urgent) == (theirs.flags & 0xFF, theirs.win, theirs.urp)
    assert ours.payload == bytes(theirs.data)
    if not ours.options.malformed:
        assert dpkt_options(ours.options) == dpkt_options(options_as_dpkt_reads_them(bytes(theirs.opts)))


@given(seg=tcp_segments(), src=IPV4_ADDRESS, dst=IPV4_ADDRESS, ttl=U8)
def test_dpkt_reads_our_ipv4_tcp_packets_alike_and_recomputes_our_checksums(seg, src, dst, ttl):
    wire = build_tcp_packet(seg, src, dst, ttl=ttl)
    theirs = dpkt.ip.IP(wire)
    assert (theirs.v, theirs.hl, theirs.len, theirs.p, theirs.ttl) == (4, 5, len(wire), PROTO_TCP, ttl)
    assert (theirs.src, theirs.dst, theirs.df, theirs.mf, theirs.offset) == (src, dst, 1, 0, 0)
    assert isinstance(theirs.data, dpkt.tcp.TCP)
    assert_tcp_fields_agree(parse_tcp(wire[20:], src, dst), theirs.data)
    theirs.sum = 0
    theirs.data.sum = 0
    assert bytes(theirs) == wire


@given(seg=tcp_segments(), src=IPV6_ADDRESS, dst=IPV6_ADDRESS, hop_limit=U8)
def test_dpkt_reads_our_ipv6_tcp_packets_alike_and_recomputes_our_checksum(seg, src, dst, hop_limit):
    wire = build_tcp_packet(seg, src, dst, ttl=hop_limit)
    theirs = dpkt.ip6.IP6(wire)
    assert (theirs.v, theirs.plen, theirs.nxt, theirs.p, theirs.hlim) == (6, len(wire) - 40, 6, 6, hop_limit)
    assert (theirs.src, theirs.dst, theirs.fc, theirs.flow) == (src, dst, 0, 0)
    assert_tcp_fields_agree(parse_tcp(wire[40:], src, dst), theirs.data)
    theirs.data.sum = 0
    assert bytes(theirs) == wire


@st.composite
def raw_options(draw) -> bytes:
    """Option bytes that are often well formed and sometimes not: real options, junk kinds, bad lengths."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8]) | UNKNOWN_KIND)
        if kind in (0, 1):
            parts.append(bytes((kind,)))
            continue
        natural = {2: 4, 3: 3, 4: 2, 5: 2 + 8 * draw(st.integers(1, 4)), 8: 10}.get(kind, draw(st.integers(2, 12)))
        length = draw(st.just(natural) | st.integers(0, 44))
        parts.append(bytes((kind, length)) + draw(st.binary(min_size=max(length - 2, 0), max_size=max(length - 2, 0))))
    return b"".join(parts)[: draw(st.integers(0, 40))]


@given(raw=raw_options() | st.binary(max_size=40))
def test_parse_options_agrees_with_dpkt_parse_opts_where_the_list_is_well_formed(raw):
    ours = parse_options(raw)
    theirs = options_as_dpkt_reads_them(raw)
    if theirs is None:
        assert ours.malformed  # dpkt found a kind with no room for its length byte
    if not ours.malformed:
        assert ours == theirs


def dpkt_tcp(seg, raw: bytes) -> dpkt.tcp.TCP:
    """The segment built by dpkt with ``raw`` (4-byte aligned) option bytes and a zero checksum for dpkt to fill."""
    return dpkt.tcp.TCP(
        sport=seg.src_port,
        dport=seg.dst_port,
        seq=seg.seq,
        ack=seg.ack,
        flags=seg.flags,
        win=seg.window,
        urp=seg.urgent,
        sum=0,
        opts=raw,
        data=seg.payload,
        off=5 + len(raw) // 4,
    )


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR, raw=raw_options())
def test_we_read_tcp_segments_dpkt_builds_with_any_option_bytes(seg, addresses, raw):
    src, dst = addresses
    raw += bytes(-len(raw) % 4)
    tcp = dpkt_tcp(seg, raw)
    if len(src) == 4:
        wire = bytes(dpkt.ip.IP(src=src, dst=dst, p=PROTO_TCP, ttl=33, id=0x4242, data=tcp))
    else:
        wire = bytes(dpkt.ip6.IP6(src=src, dst=dst, nxt=PROTO_TCP, hlim=33, plen=len(tcp), data=tcp))
    packet = parse_ip(wire)
    assert (packet.src, packet.dst, packet.protocol, packet.ttl) == (src, dst, PROTO_TCP, 33)
    ours = parse_tcp(packet.payload, src, dst)  # dpkt's checksum verifies
    assert (ours.src_port, ours.dst_port, ours.seq, ours.ack) == (
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
    )
    assert (ours.flags, ours.window, ours.urgent, ours.payload) == (
        seg.flags,
        seg.window,
        seg.urgent,
        seg.payload,
    )
    assert ours.options == parse_options(raw)
    assert_tcp_fields_agree(ours, tcp)


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR)
def test_we_read_dpkt_built_segments_with_our_encoded_options(seg, addresses):
    src, dst = addresses
    raw = build_options(seg.options)
    tcp = dpkt_tcp(seg, raw)
    if len(src) == 4:
        wire = bytes(dpkt.ip.IP(src=src, dst=dst, p=PROTO_TCP, data=tcp))
    else:
        wire = bytes(dpkt.ip6.IP6(src=src, dst=dst, nxt=PROTO_TCP, hlim=64, plen=len(tcp), data=tcp))
    packet = parse_ip(wire)
    assert parse_tcp(packet.payload, packet.src, packet.dst) == seg


@given(
    src=IPV4_ADDRESS,
    dst=IPV4_ADDRESS,
    tos=U8,
    ident=U16,
    flags_offset=U16,
    ttl=U8,
    protocol=st.sampled_from([253, 254, 17]),
    options=st.binary(max_size=40),
    payload=st.binary(max_size=60),
    padding=st.binary(max_size=8),
)
def test_ipv4_headers_with_options_and_padding_read_alike(
    src, dst, tos, ident, flags_offset, ttl, protocol, options, payload, padding
):
    options += bytes(-len(options) % 4)
    ihl = 20 + len(options)
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl // 4,
            tos,
            ihl + len(payload),
            ident,
            flags_offset,
            ttl,
            protocol,
            0,
            src,
            dst,
        )
        + options
    )
    wire = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:] + payload + padding
    ours = parse_ip(wire)
    theirs = dpkt.ip.IP(wire)
    assert (ours.src, ours.dst, ours.ttl, ours.protocol, ours.tos) == (
        theirs.src,
        theirs.dst,
        theirs.ttl,
        theirs.p,
        theirs.tos,
    )
    assert (ours.ident, ours.dont_fragment, ours.more_fragments) == (
        theirs.id,
        bool(theirs.df),
        bool(theirs.mf),
    )
    assert ours.fragment_offset == theirs.offset * 8
    assert ours.header_length == theirs.hl * 4
    assert ours.payload == bytes(theirs.data) == payload


@st.composite
def ipv6_with_extension_headers(draw) -> tuple[bytes, int, bytes]:
    """An IPv6 packet with Hop-by-Hop first or not, then Routing, Destination Options, AH, atomic Fragment."""
    kinds = draw(st.lists(st.sampled_from([43, 44, 51, 60]), max_size=6))
    if kinds[:1] == [44] and len(kinds) > 1:
        # dpkt 1.9.8 reads frag_off from the last extension header when the first is a Fragment header, and
        # raises AttributeError unless that last one is a Fragment header too.
        kinds.insert(0, 60)
    if draw(st.booleans()):
        kinds.insert(0, 0)
    protocol = draw(st.sampled_from([PROTO_TCP, 17, 58, 253]))
    payload = draw(st.binary(min_size=1, max_size=40))  # a zero Payload Length would mean a jumbogram
    chain = b""
    for kind, next_header in zip(kinds, [*kinds[1:], protocol]):
        if kind == 44:
            chain += struct.pack("!BxHI", next_header, 0, draw(U32))  # atomic: offset 0, M 0
        elif kind == 51:
            units = draw(st.integers(1, 4))  # dpkt wants AH's SPI and sequence number: at least 12 bytes
            chain += bytes((next_header, units)) + bytes((units + 2) * 4 - 2)
        else:
            units = draw(st.integers(0, 2))
            chain += bytes((next_header, units)) + bytes((units + 1) * 8 - 2)
    body = chain + payload
    first = kinds[0] if kinds else protocol
    header = struct.pack(
        "!IHBB16s16s",
        0x60000000 | draw(U8) << 20 | draw(st.integers(0, 0xFFFFF)),
        len(body),
        first,
        draw(U8),
        draw(IPV6_ADDRESS),
        draw(IPV6_ADDRESS),
    )
    return header + body, protocol, payload


@given(packet=ipv6_with_extension_headers())
def test_ipv6_extension_header_chains_read_alike(packet):
    wire, protocol, payload = packet
    ours = parse_ip(wire)
    theirs = dpkt.ip6.IP6(wire)
    assert ours.protocol == theirs.p == protocol
    assert (ours.src, ours.dst, ours.ttl, ours.tos, ours.flow_label) == (
        theirs.src,
        theirs.dst,
        theirs.hlim,
        theirs.fc,
        theirs.flow,
    )
    assert ours.payload == payload
    if protocol == 253:
        assert bytes(theirs.data) == payload


def mutate(wire: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(wire)
    for position, value in edits:
        data[position % len(data)] = value
    data = data[: max(len(data) - cut, 0)]
    if len(data) >= 20 and data[0] >> 4 == 4 and 20 <= (data[0] & 15) * 4 <= len(data):
        # Re-seal the IPv4 header so the mutation gets past its checksum to the fields behind it.
        ihl = (data[0] & 15) * 4
        data[10:12] = b"\x00\x00"
        data[10:12] = internet_checksum(bytes(data[:ihl])).to_bytes(2, "big")
    return bytes(data)


@given(
    seg=tcp_segments(max_payload=40),
    addresses=ADDRESS_PAIR,
    edits=st.lists(st.tuples(st.integers(0, 200), U8), max_size=4),
    cut=st.integers(0, 8) | st.just(0),
)
def test_where_both_accept_a_mutated_packet_they_read_the_same_fields(seg, addresses, edits, cut):
    wire = mutate(build_tcp_packet(seg, *addresses), edits, cut)
    try:
        packet = parse_ip(wire)
    except WireError:
        return
    try:
        theirs = dpkt.ip.IP(wire) if packet.version == 4 else dpkt.ip6.IP6(wire)
    except Exception:  # dpkt's own failures are no concern of ours (STYLE.md: it raises odd things)
        return
    assert (packet.src, packet.dst) == (theirs.src, theirs.dst)
    assert packet.protocol == theirs.p
    if packet.protocol != PROTO_TCP or packet.is_fragment or not isinstance(theirs.data, dpkt.tcp.TCP):
        return
    try:
        ours = parse_tcp(packet.payload, packet.src, packet.dst, verify_checksum=False)
    except WireError:
        return
    assert_tcp_fields_agree(ours, theirs.data)
