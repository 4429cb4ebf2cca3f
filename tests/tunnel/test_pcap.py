"""PcapWriter and TeeDevice: what a device passes comes back out of the file, in order, as raw IP."""

import struct

import dpkt
import pytest

from stack.wire import ACK, TcpSegment
from stack.wire.tso import build_tso_packet
from tunnel.memory import MemoryDevice
from tunnel.pcap import LINKTYPE_RAW, PcapWriter, TeeDevice


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0, step: float = 0.25) -> None:
        self.now, self.step = now, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def read_pcap(path) -> tuple[int, list[tuple[float, bytes]]]:
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader.datalink(), [(ts, bytes(buf)) for ts, buf in reader]


def ipv4_udp(n: int) -> bytes:
    udp = dpkt.udp.UDP(sport=1000 + n, dport=9, data=b"payload %d" % n)
    return bytes(dpkt.ip.IP(src=bytes([10, 1, 0, 2]), dst=bytes([10, 1, 0, 1]), p=dpkt.ip.IP_PROTO_UDP, data=udp))


def test_tee_records_reads_and_writes_in_order_readable_by_dpkt(tmp_path):
    path = tmp_path / "tee.pcap"
    a, b = MemoryDevice.pair()
    clock = FakeClock()
    with PcapWriter(path) as writer:
        tee = TeeDevice(a, writer, clock)
        sent = [ipv4_udp(i) for i in range(3)]
        assert tee.write(sent[0])
        assert tee.write_batch(sent[1:]) == 2
        b.write_batch([ipv4_udp(10), ipv4_udp(11)])
        received = tee.read_batch()
        tee.close()
    assert received == [ipv4_udp(10), ipv4_udp(11)]
    assert b.read_batch() == sent
    linktype, records = read_pcap(path)
    assert linktype == LINKTYPE_RAW
    assert [buf for _, buf in records] == [*sent, *received]
    assert [ts for ts, _ in records] == pytest.approx(
        [1_700_000_000.25, 1_700_000_000.5, 1_700_000_000.75, 1_700_000_001.0, 1_700_000_001.0]
    )
    assert dpkt.ip.IP(records[0][1]).data.sport == 1000  # a bare IP packet, no link header


def test_tee_does_not_record_a_write_the_device_dropped(tmp_path):
    a, _ = MemoryDevice.pair(mtu=100)
    with PcapWriter(tmp_path / "drop.pcap") as writer:
        tee = TeeDevice(a, writer, FakeClock())
        assert not tee.write(b"\x45" * 101)
        assert tee.write(b"\x45" * 100)
    assert [buf for _, buf in read_pcap(tmp_path / "drop.pcap")[1]] == [b"\x45" * 100]
    assert tee.stats.write_errors == 1


def test_tee_passes_on_readable_through_to_the_device(tmp_path):
    a, b = MemoryDevice.pair()
    with PcapWriter(tmp_path / "cb.pcap") as writer:
        tee = TeeDevice(a, writer, FakeClock())
        calls = []
        tee.on_readable = lambda: calls.append(tee.read_batch())
        b.write(b"\x45x")
    assert tee.fileno() is None and calls == [[b"\x45x"]]
    assert [buf for _, buf in read_pcap(tmp_path / "cb.pcap")[1]] == [b"\x45x"]


def test_timestamp_just_below_a_whole_second_carries_into_the_seconds(tmp_path):
    path = tmp_path / "ts.pcap"
    with PcapWriter(path) as writer:
        writer.write(b"\x45a", 1.9999996)
    with open(path, "rb") as f:
        f.seek(24)
        sec, usec, caplen, length = struct.unpack("<IIII", f.read(16))
    assert (sec, usec, caplen, length) == (2, 0, 2, 2)


def test_bad_direction_or_timestamp_is_a_clear_value_error(tmp_path):
    with PcapWriter(tmp_path / "bad.pcap") as writer:
        with pytest.raises(ValueError, match="direction 'sideways' must be one of"):
            writer.write(b"\x45", 1.0, "sideways")
        with pytest.raises(ValueError, match=r"timestamp -1\.0 must be seconds >= 0"):
            writer.write(b"\x45", -1.0)


def test_a_super_segment_is_recorded_whole_as_on_an_offloading_nic(tmp_path):
    """A TsoPacket (headers and payload kept apart for writev) goes into the file as the one datagram it is, as
    tcpdump shows a TSO segment before the NIC cuts it."""
    seg = TcpSegment(40000, 80, 1, 1, ACK, 512, bytes(range(256)) * 100)
    src, dst = bytes([10, 1, 0, 2]), bytes([10, 1, 0, 1])
    packet = build_tso_packet(seg, src, dst, 1460)
    with PcapWriter(tmp_path / "tso.pcap") as writer:
        writer.write(packet, 1_700_000_000.0, "out")
    [(_, recorded)] = read_pcap(tmp_path / "tso.pcap")[1]
    assert recorded == bytes(packet) and len(recorded) == 20 + 20 + 25_600
    assert dpkt.ip.IP(recorded).data.data == seg.payload
