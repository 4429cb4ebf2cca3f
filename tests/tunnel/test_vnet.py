"""TUN offloads (tunnel/vnet.py): the virtio_net_hdr, the negotiation with this kernel, and the super-segments the
kernel hands over once TSO is granted."""

import socket
import subprocess
import sys
import time

import pytest

from stack.wire import TcpOptions, TcpSegment, build_tcp_packet, parse_ip, parse_tcp
from stack.wire.checksum import pseudo_header_sum
from tunnel import vnet

# The kernel's side of the TUN, and the stack's address behind it.
CIDR, STACK = "10.1.0.1/24", "10.1.0.2"
SEND = "import socket, sys; s = socket.create_connection((sys.argv[1], 80), timeout=5); s.sendall(b'x' * 200000)"


def partial(packet: bytes) -> bytes:
    """``packet`` as a kernel with checksum offload hands it over: the TCP checksum field holds only the folded
    pseudo-header sum, and the header says where the rest goes."""
    ip = parse_ip(packet)
    start = len(packet) - len(ip.payload)
    folded = pseudo_header_sum(ip.src, ip.dst, 6, len(ip.payload)) % 0xFFFF
    body = packet[: start + 16] + folded.to_bytes(2, "big") + packet[start + 18 :]
    return vnet.HEADER.pack(vnet.NEEDS_CSUM, vnet.GSO_NONE, 0, 0, start, 16) + body


@pytest.mark.parametrize("src,dst", [("10.1.0.1", "10.1.0.2"), ("fd00:1::1", "fd00:1::2")], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("size", [0, 1, 1460])
def test_complete_checksum_fills_in_what_the_kernel_left_out(src, dst, size):
    family = socket.AF_INET if ":" not in src else socket.AF_INET6
    a, b = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    segment = TcpSegment(80, 40000, 1, 2, 0x18, 512, bytes(i & 0xFF for i in range(size)))
    packet = build_tcp_packet(segment, a, b)
    completed = vnet.complete_checksum(partial(packet))
    assert completed == packet
    ip = parse_ip(completed)
    parse_tcp(ip.payload, ip.src, ip.dst)  # verifies the checksum


def test_a_packet_without_needs_csum_is_passed_through():
    data = b"\x45" + bytes(39)
    assert vnet.complete_checksum(vnet.PLAIN_HEADER + data) == data


def test_the_header_is_little_endian_and_ten_bytes():
    # include/uapi/linux/virtio_net.h: flags u8, gso_type u8, hdr_len, gso_size, csum_start, csum_offset (u16).
    assert vnet.HEADER_LEN == 10
    assert vnet.HEADER.pack(1, 1, 0x0102, 1448, 20, 16)[2:4] == b"\x02\x01"


def test_this_kernel_grants_checksum_and_tso_offloads(open_tun):
    tun = open_tun([CIDR])
    assert tun.vnet_hdr and tun.offloads == "csum+tso4+tso6"


def test_without_offload_the_device_is_plain(open_tun):
    tun = open_tun([CIDR], offload=False)
    assert not tun.vnet_hdr and tun.offloads == "none"
    assert not hasattr(tun, "read_batch_verified")  # the runtime then reads plain packets and verifies them


def handshake(tun, netns) -> tuple[bytes, int, int]:
    """Have the kernel connect to port 80 behind the TUN and send 200 KB; return its SYN's source address,
    source port and sequence number."""
    netns.popen([sys.executable, "-c", SEND, STACK], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        packets, _ = tun.read_batch_verified(64)
        for packet in packets:
            ip = parse_ip(packet)
            if ip.protocol != 6:
                continue
            seg = parse_tcp(ip.payload, ip.src, ip.dst, verify_checksum=False)
            if seg.dst_port == 80 and seg.flags == 0x02:
                return ip.src, seg.src_port, seg.seq
        time.sleep(0.01)
    raise AssertionError("no SYN from the kernel")


def test_the_kernel_hands_over_super_segments_it_vouches_for(open_tun, netns):
    tun = open_tun([CIDR])
    kernel, port, isn = handshake(tun, netns)
    ours = socket.inet_pton(socket.AF_INET, STACK)
    # SYN-ACK with an 8 MB window (scale 7) and MSS 1460; the kernel then sends its 200 KB as TSO lets it.
    expected = (isn + 1) & 0xFFFFFFFF
    syn_ack = TcpSegment(80, port, 1000, expected, 0x12, 65535, b"", TcpOptions(mss=1460, window_scale=7))
    tun.write(build_tcp_packet(syn_ack, ours, kernel))
    deadline, largest, trusted, got = time.monotonic() + 5, 0, True, 0
    while got < 100_000 and time.monotonic() < deadline:
        packets, verified = tun.read_batch_verified(64)
        for packet, ok in zip(packets, verified):
            ip = parse_ip(packet)
            seg = parse_tcp(ip.payload, ip.src, ip.dst, verify_checksum=False)
            if seg.dst_port != 80 or not seg.payload:
                continue
            largest, trusted = max(largest, len(seg.payload)), trusted and ok
            if seg.seq == expected:
                expected = (expected + len(seg.payload)) & 0xFFFFFFFF
                got += len(seg.payload)
                ack = TcpSegment(80, port, 1001, expected, 0x10, 65535, b"")
                tun.write(build_tcp_packet(ack, ours, kernel))
        time.sleep(0.001)
    assert got >= 100_000
    assert largest > 1460, "only MTU-sized packets: TSO was not in effect"
    assert trusted


def test_plain_reads_on_an_offloading_device_have_complete_checksums(open_tun, netns):
    tun = open_tun([CIDR])
    netns.popen([sys.executable, "-c", SEND, STACK], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for packet in tun.read_batch(64):
            ip = parse_ip(packet)
            if ip.protocol == 6:
                seg = parse_tcp(ip.payload, ip.src, ip.dst)  # raises on a wrong checksum
                assert seg.dst_port == 80
                return
        time.sleep(0.01)
    raise AssertionError("no SYN from the kernel")
