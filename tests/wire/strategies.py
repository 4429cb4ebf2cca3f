"""Hypothesis strategies and plain reference implementations shared by the wire tests."""

import struct

from hypothesis import strategies as st

from stack.wire import SYN, TcpOptions, TcpSegment

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)

IPV4_ADDRESS = st.binary(min_size=4, max_size=4)
IPV6_ADDRESS = st.binary(min_size=16, max_size=16)
ADDRESS_PAIR = st.one_of(st.tuples(IPV4_ADDRESS, IPV4_ADDRESS), st.tuples(IPV6_ADDRESS, IPV6_ADDRESS))

# Option kinds without a field of their own in TcpOptions (EOL, NOP, MSS, WS, SACK-permitted, SACK, TS have
# one).
UNKNOWN_KIND = st.integers(6, 255).filter(lambda kind: kind != 8)

# Every way a parser may be handed bytes: the parsers must treat them all alike.
BUFFER_KINDS = st.sampled_from([bytes, bytearray, memoryview, lambda data: memoryview(b"\xaa\xbb" + data)[2:]])


def reference_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 word by word: add 16-bit words, fold the carries back in, complement."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header_bytes(src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    """The pseudo-header as RFC 9293 §3.1 (IPv4) and RFC 8200 §8.1 (IPv6) draw it."""
    if len(src) == 4:
        return src + dst + struct.pack("!xBH", protocol, length)
    return src + dst + struct.pack("!I3xB", length, protocol)


@st.composite
def tcp_options(draw, *, syn: bool = True) -> TcpOptions:
    """Options that fit in 40 bytes; the SYN-only ones (MSS, WS, SACK-permitted) only when ``syn``."""
    budget = 40
    mss = draw(st.none() | U16) if syn else None
    budget -= 0 if mss is None else 4
    sack_permitted = draw(st.booleans()) if syn else False
    timestamps = draw(st.none() | st.tuples(U32, U32))
    budget -= 12 if timestamps is not None else 4 if sack_permitted else 0
    window_scale = draw(st.none() | st.integers(0, 14)) if syn else None
    budget -= 0 if window_scale is None else 4
    max_blocks = min(4, (budget - 4) // 8) if budget >= 12 else 0
    sack_blocks = tuple(draw(st.lists(st.tuples(U32, U32), max_size=max_blocks)))
    budget -= 4 + 8 * len(sack_blocks) if sack_blocks else 0
    unknown = []
    while budget >= 2 and draw(st.integers(0, 3)) == 0:
        data = draw(st.binary(max_size=min(budget - 2, 12)))
        unknown.append((draw(UNKNOWN_KIND), data))
        budget -= 2 + len(data)
    return TcpOptions(mss, window_scale, sack_permitted, sack_blocks, timestamps, tuple(unknown))


@st.composite
def tcp_segments(draw, *, max_payload: int = 300) -> TcpSegment:
    flags = draw(U8)
    options = draw(st.just(TcpOptions()) | tcp_options(syn=bool(flags & SYN)))
    return TcpSegment(
        src_port=draw(U16),
        dst_port=draw(U16),
        seq=draw(U32),
        ack=draw(U32),
        flags=flags,
        window=draw(U16),
        payload=draw(st.binary(max_size=max_payload)),
        options=options,
        urgent=draw(U16),
    )
