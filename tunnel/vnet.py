"""TUN offloads: the ``virtio_net_hdr`` that precedes every packet on a TUN opened with ``IFF_VNET_HDR``, and the
``TUNSETOFFLOAD`` negotiation (include/uapi/linux/virtio_net.h, include/uapi/linux/if_tun.h).

With checksum and TSO offloads on, the kernel hands us TCP super-segments of up to 64 KB (what it would have
segmented for a real NIC) with only the pseudo-header sum in the checksum field, flagged ``NEEDS_CSUM``; it has
produced or checked every byte itself, so verifying them would only cost time. Measured facts on this kernel (6.18):
the header is little-endian ``<BBHHHH``; ``TUNSETOFFLOAD`` takes its flags by value; ``TSO4`` without ``CSUM`` is
EINVAL.
"""

import errno
import fcntl
import struct

from stack.wire import tso

HEADER = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
HEADER_LEN = HEADER.size  # 10
PLAIN_HEADER = bytes(HEADER_LEN)  # for writes: no GSO, and the checksum is already in the packet

# virtio_net.h
NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum field holds only the pseudo-header sum
DATA_VALID = 2  # VIRTIO_NET_HDR_F_DATA_VALID: the kernel has verified the checksum
TRUSTED = NEEDS_CSUM | DATA_VALID  # either way, the kernel vouches for the bytes: nothing for us to verify
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4

# The most TCP payload we join into one super-segment: an IPv4 datagram holds 65535 bytes, less 20 of IP header
# and up to 60 of TCP header.
TSO_LIMIT = 65535 - 20 - 60

# if_tun.h
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
# Tried in order: everything, then checksums alone (TSO needs CSUM), then nothing (plain packets with a header).
OFFLOAD_CHOICES = (
    ("csum+tso4+tso6", TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6),
    ("csum", TUN_F_CSUM),
    ("none", 0),
)


def negotiate(fd: int) -> str:
    """Ask the kernel for the widest offloads it grants on TUN ``fd``; returns their name."""
    for name, flags in OFFLOAD_CHOICES:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOTTY, errno.EOPNOTSUPP):
                continue
            raise
        return name
    return "none"


def complete_checksum(data: bytes) -> bytes:
    """The packet after the header ``data`` starts with, its checksum filled in if the header says it needs one
    (virtio 1.1 §5.1.6.2: "the checksum on the packet is incomplete", its sum over ``csum_start`` onwards goes at
    ``csum_start + csum_offset``). For readers that check every checksum themselves."""
    flags, _, _, _, start, offset = HEADER.unpack_from(data)
    packet = data[HEADER_LEN:]
    if not flags & NEEDS_CSUM or start + offset + 2 > len(packet):
        return packet
    return tso.complete_checksum(packet, start, offset)


def buffers(packet) -> tuple:
    """What to ``writev`` for ``packet``: a header asking nothing of the kernel, then the packet; or for a
    ``TsoPacket``, a header asking for segmentation at its ``gso_size`` and the pieces' checksums (virtio 1.1
    §5.1.6.2), then its headers and its payload."""
    if type(packet) is not tso.TsoPacket:
        return PLAIN_HEADER, packet
    headers = packet.header
    ipv4 = headers[0] >> 4 == 4
    ip_length = (headers[0] & 0x0F) * 4 if ipv4 else 40
    gso = HEADER.pack(NEEDS_CSUM, GSO_TCPV4 if ipv4 else GSO_TCPV6, len(headers), packet.gso_size, ip_length, 16)
    return gso, headers, packet.payload
