"""Per-packet cost of the wire layer against dpkt: checksum, parse and build of full-sized TCP segments.

Each row is the best of several timeit runs, in microseconds per operation; the last column is how many times
faster ours is (dpkt's time over ours). Ours verifies every checksum it parses (IPv4 header and TCP); dpkt
verifies none, and computes the checksums it builds only because they are left at zero.

    python bench/bench_wire.py [--repeat 7]
"""

import argparse
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dpkt

from stack.wire import (
    ACK,
    PSH,
    TcpOptions,
    TcpSegment,
    build_tcp_packet,
    internet_checksum,
    parse_ip,
    parse_tcp,
)

SRC = bytes((10, 0, 0, 1))
DST = bytes((10, 0, 0, 2))
MSS = 1460


def best_microseconds(stmt, repeat: int) -> float:
    timer = timeit.Timer(stmt)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def dpkt_packet(seg: TcpSegment, raw_options: bytes) -> bytes:
    tcp = dpkt.tcp.TCP(
        sport=seg.src_port,
        dport=seg.dst_port,
        seq=seg.seq,
        ack=seg.ack,
        flags=seg.flags,
        win=seg.window,
        sum=0,
        opts=raw_options,
        off=5 + len(raw_options) // 4,
        data=seg.payload,
    )
    return bytes(dpkt.ip.IP(src=SRC, dst=DST, p=6, ttl=64, df=1, data=tcp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs per row; the best is kept")
    args = parser.parse_args()

    payload = bytes(range(256)) * 5 + bytes(range(180))
    assert len(payload) == MSS
    bare = TcpSegment(40000, 443, 0xFFFFF000, 0x12345678, ACK | PSH, 502, payload)
    stamped = TcpSegment(
        40000,
        443,
        0xFFFFF000,
        0x12345678,
        ACK | PSH,
        502,
        payload[:1448],
        TcpOptions(timestamps=(0x01020304, 0x05060708)),
    )
    packet = build_tcp_packet(bare, SRC, DST)
    packet_ts = build_tcp_packet(stamped, SRC, DST)
    assert len(packet) == len(packet_ts) == 1500
    # Both sides must build the very same bytes for the comparison to mean anything.
    assert dpkt_packet(bare, b"") == packet
    assert dpkt_packet(stamped, packet_ts[40:52]) == packet_ts

    def parse_ours(data=packet):
        ip = parse_ip(data)
        return parse_tcp(ip.payload, ip.src, ip.dst)

    def parse_ours_unverified(data=packet):
        ip = parse_ip(data)
        return parse_tcp(ip.payload, ip.src, ip.dst, verify_checksum=False)

    rows = [
        ("checksum, 1460 bytes", lambda: internet_checksum(payload), lambda: dpkt.in_cksum(payload)),
        ("parse 1500-byte IPv4+TCP packet", parse_ours, lambda: dpkt.ip.IP(packet)),
        ("  same, TCP checksum not verified", parse_ours_unverified, lambda: dpkt.ip.IP(packet)),
        (
            "  same, with timestamps option",
            lambda: parse_ours(packet_ts),
            lambda: dpkt.tcp.parse_opts(dpkt.ip.IP(packet_ts).data.opts),
        ),
        (
            "build_tcp_packet, 1460-byte payload",
            lambda: build_tcp_packet(bare, SRC, DST),
            lambda: dpkt_packet(bare, b""),
        ),
        (
            "  same, with timestamps option",
            lambda: build_tcp_packet(stamped, SRC, DST),
            lambda: dpkt_packet(stamped, packet_ts[40:52]),
        ),
    ]
    version = sys.version.split()[0]
    print(f"Python {version}, dpkt {dpkt.__version__}; best of {args.repeat} runs, µs per operation")
    print(f"{'operation':36} {'ours':>8} {'dpkt':>8} {'dpkt/ours':>10}")
    for name, ours, theirs in rows:
        ours_us = best_microseconds(ours, args.repeat)
        theirs_us = best_microseconds(theirs, args.repeat)
        print(f"{name:36} {ours_us:8.2f} {theirs_us:8.2f} {theirs_us / ours_us:9.2f}x")


if __name__ == "__main__":
    main()
