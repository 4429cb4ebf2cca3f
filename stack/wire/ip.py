"""IPv4 (RFC 791) and IPv6 (RFC 8200) headers: parse a packet off the wire, build one to send."""

import struct
from dataclasses import dataclass

from ._buffer import as_bytes
from .errors import WireError

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_FRAGMENT = struct.Struct("!BxHI")

_DF = 0x4000
_MF = 0x2000

# RFC 8200 §4.2 extension headers we step over to reach the upper layer; AH is RFC 4302. ESP (50) is not in
# the list: what follows it is encrypted, so it is the upper layer as far as we can see.
_EXT_HOP_BY_HOP = 0
_EXT_ROUTING = 43
_EXT_FRAGMENT = 44
_EXT_AH = 51
_EXT_DESTINATION = 60
_EXTENSION_HEADERS = frozenset((_EXT_HOP_BY_HOP, _EXT_ROUTING, _EXT_FRAGMENT, _EXT_AH, _EXT_DESTINATION))
NO_NEXT_HEADER = 59
# Bound the walk so a chain of tiny headers costs little; no real packet carries more (RFC 8200 §4.1 allows
# each header once, Destination Options twice).
MAX_EXTENSION_HEADERS = 8


@dataclass(frozen=True, slots=True)
class IpPacket:
    """One IP packet; ``payload`` is the upper layer's bytes, past any extension headers, link padding cut."""

    version: int
    src: bytes
    dst: bytes
    protocol: int
    ttl: int
    payload: bytes
    tos: int = 0
    ident: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    fragment_offset: int = 0
    flow_label: int = 0
    header_length: int = 0

    @property
    def is_fragment(self) -> bool:
        """A piece of a larger datagram: not parseable as an upper-layer message on its own."""
        return self.more_fragments or self.fragment_offset != 0


def parse_ip(data) -> IpPacket:
    """Parse an IPv4 or IPv6 packet, choosing by the version nibble; anything malformed raises WireError."""
    if type(data) is not bytes:
        data = as_bytes(data)
    if not data:
        raise WireError("empty packet")
    version = data[0] >> 4
    if version == 4:
        return _parse_ipv4(data)
    if version == 6:
        return _parse_ipv6(data)
    # RFC 1122 §3.2.1.1: "A datagram whose version number is not 4 MUST be silently discarded."
    raise WireError(f"IP version {version}")


def _parse_ipv4(data: bytes) -> IpPacket:
    n = len(data)
    if n < 20:
        raise WireError(f"IPv4 header needs 20 bytes, have {n}")
    vihl, tos, total, ident, frag, ttl, protocol, _checksum, src, dst = _IPV4.unpack_from(data)
    ihl = (vihl & 0x0F) << 2
    # RFC 791 §3.1: "the minimum value for a correct header is 5" (32-bit words).
    if ihl < 20 or ihl > n:
        raise WireError(f"IPv4 header length {ihl} with {n} bytes")
    # RFC 791 §3.1: "Total Length is the length of the datagram, measured in octets, including internet header
    # and data." Bytes past it are link-layer padding (a 40-byte datagram in a 46-byte Ethernet payload).
    if total < ihl or total > n:
        raise WireError(f"IPv4 total length {total} with header {ihl} and {n} bytes")
    # RFC 1122 §3.2.1.2: "A host MUST verify the IP header checksum on every received datagram and silently
    # discard every datagram that has a bad checksum." A correct header sums to all ones, ≡ 0 (mod 0xFFFF); it
    # is never all zero, as the version nibble is 4.
    if int.from_bytes(data[:ihl], "big") % 0xFFFF:
        raise WireError("bad IPv4 header checksum")
    # Options (RFC 791 §3.1) are skipped: the stack acts on none of them.
    return IpPacket(
        4,
        src,
        dst,
        protocol,
        ttl,
        data[ihl:total],
        tos,
        ident,
        bool(frag & _DF),
        bool(frag & _MF),
        (frag & 0x1FFF) << 3,
        0,
        ihl,
    )


def _parse_ipv6(data: bytes) -> IpPacket:
    n = len(data)
    if n < 40:
        raise WireError(f"IPv6 header needs 40 bytes, have {n}")
    vtf, payload_length, next_header, hop_limit, src, dst = _IPV6.unpack_from(data)
    if payload_length == 0 and next_header != NO_NEXT_HEADER:
        # RFC 2675 §3: a jumbogram has Payload Length 0 and a Jumbo Payload option; we support neither, and a
        # zero length is otherwise only meaningful with No Next Header.
        raise WireError("IPv6 payload length 0 (jumbogram)")
    end = 40 + payload_length
    if end > n:
        raise WireError(f"IPv6 payload length {payload_length} with {n - 40} bytes after the header")
    protocol, offset, ident, more, fragment_offset = walk_ipv6_extensions(data, next_header, end)
    # RFC 8200 §4.7: octets after a header whose Next Header is 59 "must be ignored".
    payload = b"" if protocol == NO_NEXT_HEADER else data[offset:end]
    return IpPacket(
        6,
        src,
        dst,
        protocol,
        hop_limit,
        payload,
        (vtf >> 20) & 0xFF,
        ident,
        False,
        more,
        fragment_offset,
        vtf & 0xFFFFF,
        offset,
    )


def walk_ipv6_extensions(data: bytes, next_header: int, end: int) -> tuple[int, int, int, bool, int]:
    """Step over the extension headers after a 40-byte IPv6 header, each required to end by ``end``.

    Returns ``(upper-layer protocol, its offset, fragment ident, more fragments, fragment offset in bytes)``.
    """
    offset = 40
    ident = fragment_offset = 0
    more = False
    count = 0
    while next_header in _EXTENSION_HEADERS:
        count += 1
        if count > MAX_EXTENSION_HEADERS:
            raise WireError(f"more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")
        if next_header == _EXT_HOP_BY_HOP and offset != 40:
            # RFC 8200 §4.1: "The Hop-by-Hop Options header, when present, must immediately follow the IPv6
            # header."
            raise WireError("IPv6 Hop-by-Hop Options header not first")
        # Every extension header is a multiple of 8 bytes, so at least 8.
        if offset + 8 > end:
            raise WireError("truncated IPv6 extension header")
        if next_header == _EXT_FRAGMENT:
            # RFC 8200 §4.5: Next Header, reserved, 13-bit offset in 8-octet units, 2 reserved bits, M flag,
            # 32-bit Identification.
            next_header, offset_flags, ident = _FRAGMENT.unpack_from(data, offset)
            offset += 8
            fragment_offset = offset_flags & 0xFFF8
            more = bool(offset_flags & 1)
            if fragment_offset or more:
                # What follows is a piece of the fragmentable part; its headers are not ours to read.
                break
            # RFC 8200 §4.5: a fragment that is a whole datagram (offset 0, M 0; an RFC 6946 "atomic
            # fragment") "should be processed as a fully reassembled packet", so walk on as if it were
            # unfragmented.
            continue
        # RFC 4302 §2.2: AH's Payload Len is "the length of AH in 32-bit words (4-byte units), minus 2"; the
        # others' Hdr Ext Len (RFC 8200 §4.3, §4.4, §4.6) is "in 8-octet units, not including the first 8
        # octets".
        length = (data[offset + 1] + 2) << 2 if next_header == _EXT_AH else (data[offset + 1] + 1) << 3
        next_header = data[offset]
        offset += length
        if offset > end:
            raise WireError("truncated IPv6 extension header")
    return next_header, offset, ident, more, fragment_offset


def build_ipv4(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    dont_fragment: bool = True,
) -> bytes:
    """An IPv4 header without options, with its checksum, followed by ``payload``."""
    if len(src) != 4 or len(dst) != 4:
        raise ValueError(f"IPv4 addresses must be 4 bytes, not {len(src)} and {len(dst)}")
    total = 20 + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 datagram of {total} bytes exceeds 65535")
    frag = _DF if dont_fragment else 0
    # The header's word sum, computed from the fields (2**16 ≡ 1 mod 0xFFFF lets each address count whole); it
    # is never zero, so its residue 0 means a folded sum of 0xFFFF and a checksum of 0.
    residue = 0x4500 + tos + total + ident + frag + (ttl << 8) + protocol + int.from_bytes(src + dst, "big")
    residue %= 0xFFFF
    checksum = 0xFFFF - residue if residue else 0
    try:
        header = _IPV4.pack(0x45, tos, total, ident, frag, ttl, protocol, checksum, src, dst)
    except struct.error as exc:
        raise ValueError(f"IPv4 header field out of range: {exc}") from None
    return header + payload


def build_ipv6(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """A 40-byte IPv6 header (``protocol`` as its Next Header) followed by ``payload``."""
    if len(src) != 16 or len(dst) != 16:
        raise ValueError(f"IPv6 addresses must be 16 bytes, not {len(src)} and {len(dst)}")
    if not 0 <= traffic_class <= 0xFF or not 0 <= flow_label <= 0xFFFFF:
        raise ValueError(f"traffic class {traffic_class} or flow label {flow_label} out of range")
    try:
        first_word = 0x60000000 | traffic_class << 20 | flow_label
        header = _IPV6.pack(first_word, len(payload), protocol, hop_limit, src, dst)
    except struct.error as exc:
        raise ValueError(f"IPv6 header field out of range: {exc}") from None
    return header + payload


def build_ip(src: bytes, dst: bytes, protocol: int, payload: bytes, *, ttl: int = 64) -> bytes:
    """IPv4 or IPv6 by the length of ``src``, with defaults for everything else."""
    if len(src) == 4:
        return build_ipv4(src, dst, protocol, payload, ttl=ttl)
    if len(src) == 16:
        return build_ipv6(src, dst, protocol, payload, hop_limit=ttl)
    raise ValueError(f"address of {len(src)} bytes is neither IPv4 nor IPv6")
