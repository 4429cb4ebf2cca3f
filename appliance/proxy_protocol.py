"""The HAProxy PROXY protocol, version 2 (binary): the header a proxy sends first so that the backend learns the
client's original address. Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt §2.2.

Layout: a 12-byte signature, one byte of version and command, one byte of address family and transport, a 2-byte
length of what follows, then the address block (source address, destination address, source port, destination
port, all in network byte order), then optional TLVs, which this module neither sends nor interprets.

A backend reads the 16 fixed bytes, asks ``header_length`` how many more belong to the header, reads those, and
hands the whole header to ``parse_v2``.
"""

import ipaddress
import struct

Endpoint = tuple[str, int]

# §2.2: "a constant 12 bytes block containing the protocol signature"; its null byte keeps it from parsing as text.
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED = struct.Struct("!12sBBH")  # signature, version and command, family and transport, length
FIXED_SIZE = FIXED.size  # 16
VERSION = 0x2  # §2.2: "it must always be sent as \x2 and the receiver must only accept this value"
LOCAL, PROXY = 0x0, 0x1  # the command, in the low four bits of the 13th byte
UNSPEC = 0x00  # family and transport both AF_UNSPEC/UNSPEC: what a LOCAL header carries
TCP4, UDP4, TCP6, UDP6, UNIX_STREAM, UNIX_DGRAM = 0x11, 0x12, 0x21, 0x22, 0x31, 0x32
IPV4_BLOCK = struct.Struct("!4s4sHH")  # §2.2 "for TCP/UDP over IPv4, len = 12"
IPV6_BLOCK = struct.Struct("!16s16sHH")  # §2.2 "for TCP/UDP over IPv6, len = 36"
# §2.2: "A receiver is not required to implement other ones, provided that it automatically falls back to the UNSPEC
# mode for the valid combinations above that it does not support." UDP and UNIX are valid but not TCP's business.
FALLBACK_TO_UNSPEC = frozenset({UNSPEC, UDP4, UDP6, UNIX_STREAM, UNIX_DGRAM})


def build_v2(source: Endpoint, destination: Endpoint) -> bytes:
    """The PROXY header for a TCP connection from ``source`` to ``destination`` (both IPv4 or both IPv6)."""
    src, src_port = _endpoint(source, "source")
    dst, dst_port = _endpoint(destination, "destination")
    if src.version != dst.version:
        raise ValueError(
            f"source {src} is IPv{src.version} but destination {dst} is IPv{dst.version}: one PROXY v2 header "
            "carries one address family; give both in the same family (unmap IPv4-mapped IPv6 addresses first)"
        )
    family, block = (TCP4, IPV4_BLOCK) if src.version == 4 else (TCP6, IPV6_BLOCK)
    addresses = block.pack(src.packed, dst.packed, src_port, dst_port)
    return FIXED.pack(SIGNATURE, VERSION << 4 | PROXY, family, len(addresses)) + addresses


def build_v2_local() -> bytes:
    """The LOCAL header: a connection the proxy made for itself (a health check), with no address to relay.

    §2.2: "When a sender presents a LOCAL connection, it should not present any address so it sets this field to
    zero", and the family it "should use ... when sending LOCAL commands" is UNSPEC."""
    return FIXED.pack(SIGNATURE, VERSION << 4 | LOCAL, UNSPEC, 0)


def header_length(fixed: bytes) -> int:
    """The whole header's length in bytes, from its first 16; ValueError if they do not start a v2 header."""
    if len(fixed) < FIXED_SIZE:
        raise ValueError(f"a PROXY v2 header needs its first {FIXED_SIZE} bytes to tell its length, got {len(fixed)}")
    signature, version_command, _, length = FIXED.unpack_from(fixed)
    if signature != SIGNATURE:
        raise ValueError("no PROXY v2 signature: the peer is not sending the PROXY protocol version 2")
    if version_command >> 4 != VERSION:
        raise ValueError(f"PROXY protocol version {version_command >> 4}: only version 2 is accepted")
    # §2.2: "the length of the protocol header in bytes is always exactly 16 + this value".
    return FIXED_SIZE + length


def parse_v2(data: bytes) -> tuple[Endpoint, Endpoint] | None:
    """``(source, destination)`` from one complete header (``data`` is exactly the header), or None when the
    header says to use the connection's real endpoints (LOCAL, or a family this TCP receiver falls back on)."""
    total = header_length(data)
    if len(data) != total:
        # §2.2: "The receiver must also reject incoming connections containing partial protocol headers."
        problem = "is cut short" if len(data) < total else f"is followed by {len(data) - total} more bytes"
        raise ValueError(f"the PROXY v2 header announces {total} bytes but {problem}: pass exactly one header")
    _, version_command, family, _ = FIXED.unpack_from(data)
    command = version_command & 0x0F
    if command == LOCAL:
        # §2.2 LOCAL: "The receiver must accept this connection as valid and must use the real connection endpoints
        # and discard the protocol block including the family which is ignored."
        return None
    if command != PROXY:
        # §2.2: "Receivers must drop connections presenting unexpected values here."
        raise ValueError(f"PROXY v2 command {command:#x} is neither LOCAL (0x0) nor PROXY (0x1)")
    if family in FALLBACK_TO_UNSPEC:
        return None
    if family == TCP4:
        block, make = IPV4_BLOCK, ipaddress.IPv4Address
    elif family == TCP6:
        block, make = IPV6_BLOCK, ipaddress.IPv6Address
    else:
        # §2.2: other family and transport values "must be rejected as invalid by receivers".
        raise ValueError(f"PROXY v2 family and transport {family:#04x} is not defined by the protocol")
    if total - FIXED_SIZE < block.size:
        raise ValueError(f"PROXY v2 length {total - FIXED_SIZE} is too short for the {block.size}-byte address block")
    # Bytes past the address block are TLVs; §2.2: "a receiver may choose to skip over and ignore those bytes".
    src, dst, src_port, dst_port = block.unpack_from(data, FIXED_SIZE)
    return (str(make(src)), src_port), (str(make(dst)), dst_port)


def _endpoint(endpoint: Endpoint, role: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    try:
        host, port = endpoint
        address = ipaddress.ip_address(host)
    except (TypeError, ValueError):
        raise ValueError(f"{role} {endpoint!r} is not an (IP address, port) pair like ('192.0.2.1', 443)") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"{role} port {port!r} is not a TCP port (an integer 0..65535)")
    return address, port
