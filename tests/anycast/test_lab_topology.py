"""The anycast lab's topology, proved with kernel TCP in every node: downloads complete while the route holds, the
route really moves the client's packets, replies from any node reach the client, a node's TUN gets the anycast
traffic, and moving the route under plain kernel TCP resets the download (the problem this project solves). Nothing
outlives the lab."""

import os
import select
import socket
import struct
import subprocess
import time

import pytest

from appliance.lab import Lab, RouteFlipper
from stack.wire.checksum import internet_checksum, pseudo_header_sum
from stack.wire.ip import build_ip, parse_ip
from tests.conftest import require
from tunnel.tun import TunDevice

from .conftest import namespace_names, put_anycast_on_lo, require_lab, run_client, unique_prefix

MB = 1_000_000
UDP = 17  # IANA protocol number


def delivered(before: dict, after: dict) -> dict[int, tuple[int, int]]:
    """Per node: (packets, bytes) the router delivered to it between two router_counters() readings."""
    return {k: (after[k].tx_packets - before[k].tx_packets, after[k].tx_bytes - before[k].tx_bytes) for k in after}


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_a_download_over_a_fixed_route_is_byte_exact(lab, family):
    before = lab.router_counters()
    result = run_client(lab, family, nbytes=50 * MB)
    assert result["connections"] == [
        {**result["connections"][0], "bytes": 50 * MB, "exact": True, "error": None, "first_mismatch": None}
    ]
    moved = delivered(before, lab.router_counters())
    assert moved[1][0] >= 10  # the client's request and ACKs went to node 1 …
    assert moved[2][1] < 1000 and moved[3][1] < 1000  # … and nothing but stray multicast went anywhere else


@pytest.mark.root
def test_route_to_moves_the_clients_packets_to_that_node(lab):
    for k in lab.node_numbers:
        lab.route_to(k)
        assert lab.current == k
        assert lab.router.ip("route", "get", lab.ANYCAST_V4).split()[2] == lab.node_address(k)
        before = lab.router_counters()
        result = run_client(lab, 4, nbytes=5 * MB, connections=2)
        assert result["exact"] == 2, result
        moved = delivered(before, lab.router_counters())
        assert moved[k][0] >= 10, moved
        assert all(moved[j][1] < 1000 for j in lab.node_numbers if j != k), moved


def send_from_node(lab: Lab, k: int, family: int, message: bytes, timeout: float) -> bytes | None:
    """Send a UDP datagram from node ``k``'s anycast address to the client; what the client receives, or None."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    receiver = lab.client.call_inside(socket.socket, af, socket.SOCK_DGRAM)
    sender = lab.node_ns(k).call_inside(socket.socket, af, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind((lab.client_address(family), 0))
        receiver.settimeout(timeout)
        sender.bind((lab.anycast(family), 0))
        sender.sendto(message, receiver.getsockname()[:2])
        try:
            return receiver.recv(100)
        except TimeoutError:
            return None


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_replies_from_a_node_the_route_does_not_name_reach_the_client(lab, family):
    # After a flip the connection's owner answers from the anycast address while the router's route names another
    # node: the router must forward that, which strict reverse-path filtering would not.
    assert lab.current == 1
    assert send_from_node(lab, 2, family, b"from node 2", timeout=2.0) == b"from node 2"


@pytest.mark.root
def test_strict_rp_filter_in_the_router_would_drop_those_replies(lab):
    # Why the lab turns rp_filter off: the same datagram, with the router's rp_filter strict, never arrives.
    def set_all_rp_filter(value: str) -> None:
        with open("/proc/sys/net/ipv4/conf/all/rp_filter", "w") as f:
            f.write(value)

    lab.router.call_inside(set_all_rp_filter, "1")
    try:
        assert send_from_node(lab, 2, 4, b"dropped", timeout=0.3) is None
    finally:
        lab.router.call_inside(set_all_rp_filter, "0")
    assert send_from_node(lab, 2, 4, b"delivered", timeout=2.0) == b"delivered"


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_moving_the_route_resets_kernel_tcp_downloads(lab, family):
    # The problem the project solves: after a flip the client's ACKs reach a node whose kernel has no such
    # connection, and kernel TCP answers a stranger with a RST (RFC 9293 §3.10.7.1).
    before = lab.router_counters()
    with lab.flipper(0.2) as flipper:
        result = run_client(lab, family, nbytes=5_000 * MB, connections=4, timeout=5.0)
    assert flipper.flips >= 1
    assert [c["error"] for c in result["connections"]] == ["ECONNRESET"] * 4, result
    assert result["exact"] == 0 and all(0 < c["bytes"] < 5_000 * MB for c in result["connections"])
    assert result["elapsed"] < 3.0  # reset soon after the first flip, not a timeout
    moved = delivered(before, lab.router_counters())
    assert sum(packets > 0 for packets, _ in moved.values()) >= 2, moved  # the client's packets reached 2+ nodes


@pytest.mark.root
def test_route_flipper_moves_the_route_round_robin_or_by_seed(lab):
    with RouteFlipper(lab, interval=0.02) as flipper:
        time.sleep(0.3)
    nodes = [k for _, k in flipper.history]
    assert flipper.flips == len(nodes) >= 5
    assert nodes[:6] == [2, 3, 1, 2, 3, 1][: len(nodes[:6])]
    assert lab.router.ip("route", "get", lab.ANYCAST_V4).split()[2] == lab.node_address(lab.current)
    assert max(flipper.latencies) < 0.05, sorted(flipper.latencies)

    sequences = []
    for _ in range(2):
        lab.route_to(1)
        with lab.flipper(0.02, seed=7) as seeded:
            time.sleep(0.2)
        sequences.append([k for _, k in seeded.history])
    shortest = min(map(len, sequences))
    assert shortest >= 3 and sequences[0][:shortest] == sequences[1][:shortest]
    assert all(a != b for a, b in zip([1, *sequences[0]], sequences[0]))  # every flip moves the route


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_nodes_reach_each_other_over_the_underlay(lab, family):
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    receiver = lab.node_ns(3).call_inside(socket.socket, af, socket.SOCK_DGRAM)
    sender = lab.node_ns(1).call_inside(socket.socket, af, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(lab.node_underlay(3, family))
        receiver.settimeout(2.0)
        sender.bind(lab.node_underlay(1, family))
        assert lab.node_underlay(3, family) in lab.peers_of(1, family)
        sender.sendto(b"segment for node 3", lab.node_underlay(3, family))
        data, source = receiver.recvfrom(100)
    assert (data, source[:2]) == (b"segment for node 3", lab.node_underlay(1, family))


def processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.root
def test_close_leaves_no_namespace_link_or_process_behind():
    require_lab()
    prefix = unique_prefix()
    with Lab.build(nodes=3, prefix=prefix) as lab:
        names = {ns.name for ns in lab.namespaces()}
        assert len(names) == 6 and all(name.startswith(prefix) for name in names)
        assert names <= namespace_names()
        for k in lab.node_numbers:  # the node's own process brings the anycast address (into its TUN)
            assert lab.ANYCAST_V4 not in lab.node_ns(k).ip("-o", "addr")
            assert lab.ANYCAST_V6 not in lab.node_ns(k).ip("-o", "addr")
        put_anycast_on_lo(lab, 2)
        sleeper = lab.node_ns(2).popen(["sleep", "60"])
        with lab.flipper(0.01):
            time.sleep(0.05)
        router = lab.router.name
        assert processes_mentioning(router)  # the persistent `ip -batch` process
    assert not {name for name in namespace_names() if name.startswith(prefix)}
    root_links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert prefix not in root_links
    assert sleeper.returncode is not None
    assert processes_mentioning(router) == []
    assert lab.current is None
    with pytest.raises(ValueError, match="closed"):
        lab.route_to(1)


@pytest.mark.root
def test_a_build_that_fails_half_way_removes_what_it_made(monkeypatch):
    require_lab()
    prefix = unique_prefix()
    real = Lab._node_commands

    def broken(self, k):
        return [*real(self, k), "route add 192.0.2.0/24 via 203.0.113.1"] if k == 2 else real(self, k)

    monkeypatch.setattr(Lab, "_node_commands", broken)
    with pytest.raises(RuntimeError, match=r"route add 192\.0\.2\.0/24 via 203\.0\.113\.1"):
        Lab.build(nodes=3, prefix=prefix)
    assert not {name for name in namespace_names() if name.startswith(prefix)}


def test_bad_arguments_are_value_errors_before_anything_is_made():
    with pytest.raises(ValueError, match="nodes=0"):
        Lab.build(nodes=0)
    with pytest.raises(ValueError, match="net=255"):
        Lab.build(net=255)
    with pytest.raises(ValueError, match="name prefix"):
        Lab.build(prefix="waytoolong")


@pytest.mark.root
def test_names_and_addresses(kernel_lab):
    lab = kernel_lab
    assert lab.node_underlay(2) == ("10.41.0.2", 6080)
    assert lab.node_underlay(3, 6) == ("fd00:41::3", 6080)
    assert lab.peers_of(2) == [("10.41.0.1", 6080), ("10.41.0.3", 6080)]
    assert (lab.client_address(4), lab.client_address(6)) == ("10.40.0.2", "fd00:40::2")
    assert (lab.node_address(3), lab.node_address(3, 6)) == ("10.40.3.2", "fd00:40:3::2")
    assert len({lab.tun_name(k) for k in lab.node_numbers}) == 3
    assert all(len(lab.tun_name(k)) <= 15 and lab.tun_name(k).startswith("atl") for k in lab.node_numbers)
    with pytest.raises(ValueError, match="nodes are 1 to 3"):
        lab.node_ns(4)


def udp_reply(packet: bytes, payload: bytes) -> bytes:
    """The UDP datagram answering ``packet`` (a UDP/IP packet), addresses and ports swapped."""
    request = parse_ip(packet)
    sport, dport = struct.unpack("!HH", request.payload[:4])
    length = 8 + len(payload)
    header = struct.pack("!HHHH", dport, sport, length, 0)
    checksum = internet_checksum(header + payload, pseudo_header_sum(request.dst, request.src, UDP, length)) or 0xFFFF
    return build_ip(request.dst, request.src, UDP, struct.pack("!HHHH", dport, sport, length, checksum) + payload)


def read_udp(tun: TunDevice, timeout: float) -> bytes:
    """The first UDP packet the kernel writes into ``tun`` (skipping neighbour discovery, MLD and the like)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([tun], [], [], left)[0]:
            for packet in tun.read_batch():
                if parse_ip(packet).protocol == UDP:
                    return packet
    raise AssertionError(f"no UDP packet reached {tun.name} within {timeout} s")


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_anycast_packets_reach_the_nodes_tun_and_its_replies_reach_the_client(family):
    # The real node's path, with no kernel address on the anycast address: router -> node k -> the TUN the node
    # makes (named by the lab, route only), and what the node writes into its TUN -> router -> client.
    require_lab()
    require(os.path.exists("/dev/net/tun"), "needs /dev/net/tun")
    with Lab.build(nodes=2, prefix=unique_prefix()) as lab:
        lab.route_to(2)
        routes = [f"{lab.ANYCAST_V4}/32", f"{lab.ANYCAST_V6}/128"]
        with TunDevice.open(lab.tun_name(2), addresses=[], routes=routes, netns=lab.node_ns(2)) as tun:
            af = socket.AF_INET if family == 4 else socket.AF_INET6
            with lab.client.call_inside(socket.socket, af, socket.SOCK_DGRAM) as client:
                client.settimeout(2.0)
                client.sendto(b"to the anycast address", (lab.anycast(family), 7000))
                packet = read_udp(tun, timeout=2.0)
                assert parse_ip(packet).payload[8:] == b"to the anycast address"
                tun.write(udp_reply(packet, b"from node 2's TUN"))
                data, source = client.recvfrom(100)
        assert (data, source[:2]) == (b"from node 2's TUN", (lab.anycast(family), 7000))
