"""ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages, and the TCP header an error message quotes."""

import struct
from dataclasses import dataclass

from ._buffer import as_bytes
from .checksum import internet_checksum, pseudo_header_sum
from .errors import WireError
from .ip import PROTO_ICMPV6, PROTO_TCP, walk_ipv6_extensions

_ICMP = struct.Struct("!BBHI")
_PORTS_SEQ = struct.Struct("!HHI")

# RFC 792 / RFC 1122 §3.2.2: Destination Unreachable 3, Source Quench 4, Redirect 5, Time Exceeded 11,
# Parameter Problem 12.
_V4_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))
_V4_DEST_UNREACHABLE = 3
_V4_FRAGMENTATION_NEEDED = 4
_V6_PACKET_TOO_BIG = 2


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    """One ICMP message; ``rest`` is the 32-bit word after the checksum, ``payload`` what follows it."""

    version: int
    type: int
    code: int
    rest: int
    payload: bytes

    @property
    def is_error(self) -> bool:
        """An error message, whose payload quotes the datagram that caused it."""
        if self.version == 4:
            return self.type in _V4_ERROR_TYPES
        # RFC 4443 §2.1: types 1 to 4 are the defined error messages (Destination Unreachable, Packet Too Big,
        # Time Exceeded, Parameter Problem).
        return 1 <= self.type <= 4

    @property
    def mtu(self) -> int | None:
        """The next-hop MTU a Fragmentation Needed or Packet Too Big message reports, else None."""
        if self.version == 4:
            if self.type == _V4_DEST_UNREACHABLE and self.code == _V4_FRAGMENTATION_NEEDED:
                # RFC 1191 §4 puts the Next-Hop MTU in the low-order 16 bits of the formerly unused word;
                # routers older than RFC 1191 leave it zero, which the caller must treat as unknown.
                return self.rest & 0xFFFF
            return None
        if self.type == _V6_PACKET_TOO_BIG:
            # RFC 4443 §3.2: "MTU: The Maximum Transmission Unit of the next-hop link", all 32 bits.
            return self.rest
        return None


@dataclass(frozen=True, slots=True)
class QuotedTcp:
    """The identifying fields of a TCP segment quoted in an ICMP error: one that we sent, so ``src`` is
    ours."""

    version: int
    src: bytes
    dst: bytes
    src_port: int
    dst_port: int
    seq: int


def _check_version(version: int, src: bytes, dst: bytes, need_addresses: bool) -> None:
    if version != 4 and version != 6:
        raise ValueError(f"ICMP version must be 4 or 6, not {version}")
    if version == 6 and need_addresses and (len(src) != 16 or len(dst) != 16):
        raise ValueError("the ICMPv6 checksum covers the IPv6 pseudo-header: pass 16-byte src and dst")


def parse_icmp(data, *, version: int, src: bytes = b"", dst: bytes = b"", verify_checksum: bool = True) -> IcmpMessage:
    """Parse an ICMP message; to verify an ICMPv6 checksum it needs the pseudo-header's src and dst."""
    _check_version(version, src, dst, verify_checksum)
    if type(data) is not bytes:
        data = as_bytes(data)
    n = len(data)
    if n < 8:
        raise WireError(f"ICMP message needs 8 bytes, have {n}")
    if verify_checksum:
        # RFC 792: "The checksum is the 16-bit ones's complement of the one's complement sum of the ICMP
        # message starting with the ICMP Type." RFC 4443 §2.3 adds the IPv6 pseudo-header (RFC 8200 §8.1) for
        # ICMPv6.
        initial = 0 if version == 4 else pseudo_header_sum(src, dst, PROTO_ICMPV6, n)
        if internet_checksum(data, initial):
            raise WireError("bad ICMP checksum")
    icmp_type, code, _checksum, rest = _ICMP.unpack_from(data)
    return IcmpMessage(version, icmp_type, code, rest, data[8:])


def build_icmp(msg: IcmpMessage, src: bytes = b"", dst: bytes = b"") -> bytes:
    """The message with its checksum; ICMPv6 needs the IPv6 ``src`` and ``dst`` for its pseudo-header."""
    _check_version(msg.version, src, dst, True)
    payload = msg.payload
    initial = 0 if msg.version == 4 else pseudo_header_sum(src, dst, PROTO_ICMPV6, 8 + len(payload))
    try:
        header = _ICMP.pack(msg.type, msg.code, 0, msg.rest)
        checksum = internet_checksum(payload, initial + int.from_bytes(header, "big"))
        return _ICMP.pack(msg.type, msg.code, checksum, msg.rest) + payload
    except struct.error as exc:
        raise ValueError(f"ICMP field out of range: {exc}") from None


def parse_quoted_tcp(quoted) -> QuotedTcp:
    """Ports and sequence number of the TCP segment an ICMP error quotes, or WireError.

    RFC 792 quotes "Internet Header + 64 bits of Original Data Datagram", and RFC 1122 §3.2.2 requires "at
    least the first 8 data octets", exactly the ports and sequence number; RFC 4443 §2.4 (c) quotes as much as
    fits in 1280 bytes. The quote is truncated, so neither its total length nor any checksum is checked, and
    the routers and NATs that rewrite quoted headers make the inner IPv4 header checksum no safer to trust.
    """
    data = quoted if type(quoted) is bytes else as_bytes(quoted)
    n = len(data)
    if not n:
        raise WireError("empty quote")
    version = data[0] >> 4
    if version == 4:
        if n < 20:
            raise WireError(f"quoted IPv4 header needs 20 bytes, have {n}")
        offset = (data[0] & 0x0F) << 2
        if offset < 20:
            raise WireError(f"quoted IPv4 header length {offset}")
        if (data[6] << 8 | data[7]) & 0x1FFF:
            raise WireError("quoted datagram is not the first fragment")
        protocol = data[9]
        src, dst = data[12:16], data[16:20]
    elif version == 6:
        if n < 40:
            raise WireError(f"quoted IPv6 header needs 40 bytes, have {n}")
        protocol, offset, _ident, _more, fragment_offset = walk_ipv6_extensions(data, data[6], n)
        if fragment_offset:
            raise WireError("quoted datagram is not the first fragment")
        src, dst = data[8:24], data[24:40]
    else:
        raise WireError(f"quoted IP version {version}")
    if protocol != PROTO_TCP:
        raise WireError(f"quoted datagram carries protocol {protocol}, not TCP")
    if offset + 8 > n:
        raise WireError("quote too short for TCP ports and sequence number")
    src_port, dst_port, seq = _PORTS_SEQ.unpack_from(data, offset)
    return QuotedTcp(version, src, dst, src_port, dst_port, seq)
