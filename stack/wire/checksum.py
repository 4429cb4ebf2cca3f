"""The Internet checksum (RFC 1071) and the transport pseudo-headers it covers (RFC 9293 §3.1, RFC 8200 §8.1).

The fast path rests on one identity: 2**16 ≡ 1 (mod 0xFFFF), so reading the data as one big-endian integer and
reducing it modulo 0xFFFF gives the same residue as adding its 16-bit words, and CPython does both steps in C
(about 2.7 µs for 1460 bytes, against 40-60 µs for a loop over the words). End-around carry is addition modulo
0xFFFF, except that one's complement has two zeros: a non-zero sum that is ≡ 0 (mod 0xFFFF) is 0xFFFF
("negative zero"), and only an all-zero input sums to +0. ``initial`` may be any non-negative partial sum,
folded or not: only its residue and whether it is zero matter.
"""

from ._buffer import as_bytes


def internet_checksum(data, initial: int = 0) -> int:
    """The value for the checksum field over ``data`` (odd length padded with a zero byte) plus ``initial``.

    RFC 1071 §1: "To generate a checksum, the checksum field itself is cleared, the 16-bit 1's complement sum
    is computed over the octets concerned, and the 1's complement of this sum is placed in the checksum
    field."
    """
    if type(data) is not bytes and type(data) is not bytearray:
        data = as_bytes(data)
    total = int.from_bytes(data, "big")
    # Reduce first: adding to or shifting the big integer would copy it, the residue is a small int.
    residue = total % 0xFFFF
    if len(data) & 1:
        # RFC 9293 §3.1: "alignment can be achieved by padding the last octet with zeros on its right to form
        # a 16-bit word for checksum purposes." A zero byte appended multiplies the integer by 2**8.
        residue <<= 8
    if initial:
        residue += initial
    elif not total:
        # Nothing but zeros: the sum is +0 and its complement 0xFFFF.
        return 0xFFFF
    # The sum is not zero here, so residue 0 means the folded sum 0xFFFF (negative zero) and a checksum of 0.
    residue %= 0xFFFF
    return 0xFFFF - residue if residue else 0


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Partial sum of the IPv4 (RFC 9293 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header, chosen by ``len(src)``.

    The result is a folded sum of the addresses plus the protocol and length words: congruent modulo 0xFFFF
    with the plain word sum of the pseudo-header and zero only when that sum is zero, which is all a checksum
    needs.
    """
    n = len(src)
    if n != len(dst) or (n != 4 and n != 16):
        raise ValueError(f"addresses must both be 4 or 16 bytes, not {len(src)} and {len(dst)}")
    if not 0 <= protocol <= 0xFF:
        raise ValueError(f"protocol {protocol} out of range")
    if n == 4:
        # RFC 9293 §3.1: source, destination, zero, PTCL, 16-bit TCP Length.
        if not 0 <= length <= 0xFFFF:
            raise ValueError(f"IPv4 pseudo-header length {length} out of range")
        words = length
    else:
        # RFC 8200 §8.1: source, destination, 32-bit Upper-Layer Packet Length, 3 zero bytes, Next Header.
        if not 0 <= length <= 0xFFFFFFFF:
            raise ValueError(f"IPv6 pseudo-header length {length} out of range")
        words = (length >> 16) + (length & 0xFFFF)
    addresses = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    folded = addresses % 0xFFFF
    if not folded and addresses:
        folded = 0xFFFF
    return folded + protocol + words


def verify_transport_checksum(segment_bytes, src: bytes, dst: bytes, protocol: int) -> bool:
    """True when the checksum field in ``segment_bytes`` is right for this pseudo-header.

    RFC 1071 §1: "To check a checksum, the 1's complement sum is computed over the same set of octets,
    including the checksum field. If the result is all 1 bits (-0 in 1's complement arithmetic), the check
    succeeds." All 1 bits is exactly the sum whose complement, our return value, is 0.
    """
    return internet_checksum(segment_bytes, pseudo_header_sum(src, dst, protocol, len(segment_bytes))) == 0
