"""IP addresses as the stack keeps them: packed bytes (4 for IPv4, 16 for IPv6), cheap to hash and compare."""

import ipaddress

Address = bytes


def packed(addr: "str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address") -> Address:
    """Accept an address as text, packed bytes or an ``ipaddress`` object; raise ValueError naming it if bad."""
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"packed address {addr!r} must be 4 or 16 bytes long")
        return addr
    if isinstance(addr, str):
        try:
            return ipaddress.ip_address(addr).packed
        except ValueError:
            raise ValueError(f"{addr!r} is not an IPv4 or IPv6 address (write it like 10.1.0.2 or fd00::2)") from None
    return addr.packed


def text(addr: Address) -> str:
    return str(ipaddress.ip_address(addr))


def is_unicast_source(addr: Address) -> bool:
    """False for sources no segment may come from: multicast, limited broadcast, unspecified.

    RFC 9293 §3.10.7.2 / RFC 1122 §4.2.3.10 (MUST-?): "A TCP implementation MUST silently discard an incoming
    SYN segment that is addressed to a broadcast or multicast address"; we also discard any segment from one,
    as Linux does.
    """
    if len(addr) == 4:
        return addr[0] < 224 and addr != b"\x00\x00\x00\x00"
    return addr[0] != 0xFF and addr != bytes(16)
