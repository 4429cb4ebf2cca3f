"""TunDevice against the Linux kernel in a fresh namespace: the kernel's packets come out of read_batch, and packets
written into the device are answered by the kernel, over IPv4 and IPv6."""

import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import time

import dpkt
import pytest

from tunnel.device import Device
from tunnel.tun import TunDevice

from .conftest import unique_name

# The kernel's side of the TUN, and the address a user-space stack would answer for through it.
V4 = {"kernel": "10.1.0.1", "cidr": "10.1.0.1/24", "stack": "10.1.0.2"}
V6 = {"kernel": "fd00:1::1", "cidr": "fd00:1::1/64", "stack": "fd00:1::2"}
FAMILIES = pytest.mark.parametrize("net", [V4, V6], ids=["ipv4", "ipv6"])

CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], 80), timeout=5)"
WAIT = 5.0  # seconds: only a bound on a hang; the kernel answers in microseconds


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(src: str, dst: str, ident: int, seq: int, payload: bytes = b"anycast-tcp") -> bytes:
    """An ICMP or ICMPv6 echo request with its checksums computed here, by hand."""
    if ":" not in src:
        icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
        icmp = icmp[:2] + struct.pack("!H", inet_checksum(icmp)) + icmp[4:]
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0x4000, 64, 1, 0,
            socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst),
        )  # fmt: skip
        header = header[:10] + struct.pack("!H", inet_checksum(header)) + header[12:]
        return header + icmp
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    icmp = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
    pseudo = s + d + struct.pack("!I3xB", len(icmp), 58)  # RFC 8200 §8.1 upper-layer pseudo-header
    icmp = icmp[:2] + struct.pack("!H", inet_checksum(pseudo + icmp)) + icmp[4:]
    return struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 64, s, d) + icmp


def parse(packet: bytes):
    return dpkt.ip.IP(packet) if packet[0] >> 4 == 4 else dpkt.ip6.IP6(packet)


def address(ip) -> str:
    return socket.inet_ntop(socket.AF_INET if len(ip.src) == 4 else socket.AF_INET6, ip.dst)


def source(ip) -> str:
    return socket.inet_ntop(socket.AF_INET if len(ip.src) == 4 else socket.AF_INET6, ip.src)


def read_until(device: TunDevice, wanted, count: int = 1, limit: int = 64) -> list[bytes]:
    """Read until ``count`` packets satisfy ``wanted`` (the kernel also sends router solicitations and MLD
    reports on a fresh device, which are skipped)."""
    found: list[bytes] = []
    deadline = time.monotonic() + WAIT
    while len(found) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(found)} of {count} expected packets in {WAIT}s"
        select.select([device.fileno()], [], [], remaining)
        batch = device.read_batch(limit)
        assert len(batch) <= limit
        found += [p for p in batch if wanted(p)]
    return found


def is_syn_to_port_80(dst: str):
    def wanted(packet: bytes) -> bool:
        ip = parse(packet)
        tcp = ip.data
        return (
            isinstance(tcp, dpkt.tcp.TCP)
            and tcp.dport == 80
            and tcp.flags & dpkt.tcp.TH_SYN
            and not tcp.flags & dpkt.tcp.TH_ACK
            and address(ip) == dst
        )

    return wanted


def is_echo_reply(src: str, dst: str):
    def wanted(packet: bytes) -> bool:
        ip = parse(packet)
        icmp = ip.data
        reply = dpkt.icmp.ICMP_ECHOREPLY if len(ip.src) == 4 else dpkt.icmp6.ICMP6_ECHO_REPLY
        return isinstance(icmp, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6) and icmp.type == reply and (
            source(ip), address(ip)) == (src, dst)  # fmt: skip

    return wanted


@FAMILIES
def test_kernel_connect_to_an_address_routed_into_the_tun_comes_out_as_a_syn(open_tun, netns, net):
    tun = open_tun([net["cidr"]])
    netns.popen([sys.executable, "-c", CONNECT, net["stack"]], stderr=subprocess.DEVNULL)
    [syn] = read_until(tun, is_syn_to_port_80(net["stack"]))
    assert syn[0] >> 4 == (4 if net is V4 else 6)  # IFF_NO_PI: the packet starts at the IP header
    assert source(parse(syn)) == net["kernel"]
    assert tun.stats.packets_in >= 1 and tun.stats.read_batches >= 1


@FAMILIES
def test_echo_request_written_to_the_tun_is_answered_by_the_kernel(open_tun, net):
    tun = open_tun([net["cidr"]])
    assert tun.write(echo_request(net["stack"], net["kernel"], ident=0x1234, seq=1))
    [raw] = read_until(tun, is_echo_reply(net["kernel"], net["stack"]))
    ip = parse(raw)
    assert (ip.data.data.id, ip.data.data.seq, ip.data.data.data) == (0x1234, 1, b"anycast-tcp")
    if net is V4:
        assert inet_checksum(raw[:20]) == 0 and inet_checksum(bytes(ip.data)) == 0
    assert tun.stats.packets_out == 1


@FAMILIES
def test_write_batch_and_limited_reads_carry_every_packet(open_tun, net):
    tun = open_tun([net["cidr"]])
    requests = [echo_request(net["stack"], net["kernel"], ident=7, seq=n) for n in range(5)]
    assert tun.write_batch(requests) == 5
    replies = read_until(tun, is_echo_reply(net["kernel"], net["stack"]), count=5, limit=2)
    assert sorted(parse(r).data.data.seq for r in replies) == list(range(5))


def test_service_prefix_in_routes_reaches_the_tun(open_tun, netns):
    tun = open_tun(["10.1.0.1/24", "fd00:1::1/64"], routes=["192.0.2.0/24", "fd00:2::/64"])
    assert "192.0.2.0/24 dev " + tun.name in netns.ip("route", "show")
    assert "fd00:2::/64 dev " + tun.name in netns.ip("-6", "route", "show")
    for service in ("192.0.2.1", "fd00:2::1"):
        netns.popen([sys.executable, "-c", CONNECT, service], stderr=subprocess.DEVNULL)
        read_until(tun, is_syn_to_port_80(service))


def test_device_has_the_asked_mtu_and_a_nonblocking_close_on_exec_fd(open_tun, netns):
    tun = open_tun(["10.1.0.1/24"], mtu=1400)
    assert isinstance(tun, Device) and tun.mtu == 1400
    assert "mtu 1400 " in netns.ip("-o", "link", "show", tun.name)
    assert not os.get_blocking(tun.fileno())
    assert fcntl.fcntl(tun.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    while tun.read_batch(1000):  # drain whatever the kernel sent on link-up; then [] without blocking
        pass
    assert tun.read_batch() == []


def test_malformed_write_is_counted_not_raised(open_tun):
    tun = open_tun(["10.1.0.1/24"])
    assert not tun.write(b"\x00" * 20)  # no IP version nibble: the kernel says EINVAL
    assert not tun.write(b"")
    assert tun.write_batch([b"\x00" * 20, echo_request("10.1.0.2", "10.1.0.1", 1, 1)]) == 1
    assert tun.stats.write_errors == 3 and tun.stats.packets_out == 1


def test_write_while_the_link_is_down_is_a_counted_drop(open_tun, netns):
    tun = open_tun(["10.1.0.1/24"])
    netns.ip("link", "set", tun.name, "down")
    assert not tun.write(echo_request("10.1.0.2", "10.1.0.1", 1, 1))  # the kernel says EIO
    assert tun.stats.write_drops == 1


def test_close_removes_the_device_with_its_addresses_and_routes(open_tun, netns):
    tun = open_tun(["10.1.0.1/24"], routes=["192.0.2.0/24"])
    assert tun.name in netns.ip("-o", "link", "show")
    tun.close()
    assert tun.name not in netns.ip("-o", "link", "show")
    assert "192.0.2.0/24" not in netns.ip("route", "show") and "10.1.0.1" not in netns.ip("addr", "show")
    with pytest.raises(ValueError, match="closed"):
        tun.read_batch()
    with pytest.raises(ValueError, match="closed"):
        tun.write(b"\x45")
    tun.close()  # idempotent


def test_open_that_fails_midway_leaves_no_device(netns):
    name = unique_name()
    with pytest.raises(RuntimeError, match=r"route add 10\.1\.0\.0/24 dev atcp.*File exists"):
        # The address already routes 10.1.0.0/24 into the device, so the same route cannot be added again.
        TunDevice.open(name, addresses=["10.1.0.1/24"], routes=["10.1.0.0/24"], netns=netns)
    assert name not in netns.ip("-o", "link", "show")


def test_name_already_taken_is_a_clear_runtime_error(open_tun, netns):
    tun = open_tun(["10.1.0.1/24"])
    with pytest.raises(RuntimeError, match=f"could not create TUN device '{tun.name}'"):
        TunDevice.open(tun.name, addresses=["10.2.0.1/24"], netns=netns)
