"""TCP segmentation offload: one IP datagram carrying a super-segment, for a device that cuts it into segments of
``gso_size`` payload bytes (Linux's GSO/TSO, virtio-net's ``gso_size``), and the same cut done in software.

What the device does to each piece is what Linux's ``tcp_gso_segment`` does: the sequence number advances by
``gso_size`` per piece, FIN and PSH stay on the last piece only, every other header field and option is copied,
and each piece gets its own checksum. The super-segment's TCP checksum is left partial (the pseudo-header sum
alone), since the device computes the pieces' checksums anyway.
"""

from ..seq import seq_add
from .checksum import internet_checksum
from .errors import WireError
from .ip import PROTO_TCP, IpPacket, parse_ip
from .tcp import FIN, PSH, TcpSegment, build_tcp_packet, parse_tcp


class TsoPacket:
    """An IPv4 or IPv6 datagram whose TCP payload is to be cut into segments of ``gso_size`` bytes, kept as its
    headers and its payload so that the payload is never copied to join them: a device writes both parts with
    one ``writev``. ``bytes(packet)`` joins them, for whatever needs the datagram whole (a capture file)."""

    __slots__ = ("gso_size", "header", "payload")

    def __init__(self, header: bytes, payload: bytes, gso_size: int) -> None:
        self.header = header
        self.payload = payload
        self.gso_size = gso_size

    def __len__(self) -> int:
        return len(self.header) + len(self.payload)

    def __bytes__(self) -> bytes:
        return self.header + self.payload


def build_tso_packet(
    seg: TcpSegment, src: bytes, dst: bytes, gso_size: int, *, ttl: int = 64, tos: int = 0
) -> TsoPacket:
    header = build_tcp_packet(seg, src, dst, ttl=ttl, tos=tos, partial_checksum=True, headers_only=True)
    return TsoPacket(header, seg.payload, gso_size)


def segment(packet: TsoPacket) -> list[bytes]:
    """The segments a device would send for ``packet``, each a complete datagram with its checksums."""
    ip = parse_ip(bytes(packet))
    return _cut(ip, parse_tcp(ip.payload, ip.src, ip.dst, verify_checksum=False), packet.gso_size)


def fit(packet: bytes, mtu: int, partial: bool) -> list[bytes]:
    """A TCP datagram the kernel handed over as a device would take it (larger than ``mtu``, or with a
    ``partial`` checksum: the pseudo-header sum alone) as complete datagrams of at most ``mtu`` bytes, cut as a
    device would cut it. Raises WireError for anything but a TCP datagram."""
    ip = parse_ip(packet)
    if ip.protocol != PROTO_TCP:
        raise WireError(f"only TCP is cut into segments, not protocol {ip.protocol}")
    if len(packet) <= mtu:
        return [complete_checksum(packet, len(packet) - len(ip.payload), 16) if partial else packet]
    seg = parse_tcp(ip.payload, ip.src, ip.dst, verify_checksum=False)
    return _cut(ip, seg, max(mtu - (len(packet) - len(seg.payload)), 1))


def complete_checksum(packet: bytes, start: int, offset: int) -> bytes:
    """``packet`` with the checksum a device would fill in (virtio 1.1 §5.1.6.2: "the checksum on the packet is
    incomplete"): the sum from ``start`` on, over the pseudo-header sum already in the field, stored at
    ``start + offset`` (16 for TCP)."""
    checksum = internet_checksum(packet[start:]).to_bytes(2, "big")
    at = start + offset
    return packet[:at] + checksum + packet[at + 2 :]


def _cut(ip: IpPacket, seg: TcpSegment, size: int) -> list[bytes]:
    payload = seg.payload
    if not payload:
        return [build_tcp_packet(seg, ip.src, ip.dst, ttl=ip.ttl, tos=ip.tos)]
    pieces = []
    for start in range(0, len(payload), size):
        last = start + size >= len(payload)
        piece = TcpSegment(
            seg.src_port,
            seg.dst_port,
            seq_add(seg.seq, start),
            seg.ack,
            seg.flags if last else seg.flags & ~(FIN | PSH),
            seg.window,
            payload[start : start + size],
            seg.options,
            max(seg.urgent - start, 0),
        )
        pieces.append(build_tcp_packet(piece, ip.src, ip.dst, ttl=ip.ttl, tos=ip.tos))
    return pieces
