"""The anycast mechanism's own costs on the namespace lab, each beside the Linux kernel doing the same work in the
same run: three node processes (our stack on a TUN device each, tests/anycast/node_main.py) behind a kernel
router, a kernel-TCP client, the underlay bridge between the nodes.

1. Forwarding rate. The client opens a connection (route on node 1, so node 1 owns it), then the route moves to
   node 2 and a generator in the client namespace replays one of the client's own pure ACKs for that connection
   (AF_PACKET on the client's veth). Node 2 forwards every one it gets to node 1 over the UDP tunnel; the
   figures are node 2's ``forwarded_out`` and node 1's ``forwarded_in`` per second while the stream lasts, against
   what the router's kernel forwarded of the same stream (``ip -s link``). Two streams: flat out (on a small
   machine the generator's CPU, and the kernel forwarding it drives, compete with the nodes'), then paced at
   1.5 times what node 2 managed in the first (or ``--blast-pps``).
2. Forwarded round trip. A kernel client does small request/response round trips (TCP_NODELAY) with the node's
   echo service, route on the owner (direct) and then on another node (each client segment crosses the tunnel;
   replies still go direct). The kernel reference is a kernel echo server on node 1 behind the same links, on a
   second service address (192.0.2.11 on node 1's lo): the anycast address itself must never become local to a
   node's kernel, which would then answer (and reset) the TUN's connections. Then a bulk upload (``--bulk-mb``)
   through the same echo services, direct, forwarded and to the kernel: the upload is what the tunnel carries.
3. Claim round trip. Many concurrent downloads with small slices (4 MiB; claims 512 KiB before the end, as in
   the lab tests), so every connection claims its 4-tuple; every node's ``claim_rtts`` (claim to the last live
   peer's acknowledgment) are gathered. References: the same downloads from a kernel server on 192.0.2.11, and a
   kernel UDP round trip between two nodes over the underlay (a claim's floor: one datagram and its answer).

    python bench/bench_anycast.py [--blast-seconds 5] [--blast-pps 0] [--rounds 2000] [--bulk-mb 100]
                                  [--connections 100] [--download-mib 6] [--flip-interval 0] [--json out.json]
                                  (needs root)
"""

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.lab import Lab  # noqa: E402
from stack.wire.checksum import internet_checksum, pseudo_header_sum  # noqa: E402
from tunnel.keys import generate_key_line  # noqa: E402
from tunnel.netns import NetNamespace  # noqa: E402

NET = 44  # 10.44.x.x and 10.45.0.x: no test uses it, so the bench can run beside the lab tests
PORT, ECHO_PORT = 80, 7
REFERENCE = "192.0.2.11"  # the kernel reference service on node 1's lo (TEST-NET-1, like the anycast address)
KERNEL_ECHO_PORT, KERNEL_PATTERN_PORT, UDP_ECHO_PORT = 7007, 8080, 6081
MiB = 1 << 20
SLICES = ["--ranges", "1024", "--headroom", str(1 * MiB), "--hwm-margin", str(MiB // 2)]
ETH_P_ALL, ETH_P_IP, PACKET_OUTGOING = 0x0003, 0x0800, 4
TCP_ACK = 0x10
WARMUP_ROUNDS = 10  # unmeasured round trips before each block (the first after a route change, among them)
ROUND_BLOCKS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PEER = ROOT / "tests" / "kernel" / "peer.py"
CLIENT = ROOT / "tests" / "anycast" / "client_main.py"
PATTERN_SERVER = ROOT / "tests" / "anycast" / "kernel_server.py"


# -- small tools ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "median": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "count": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def link_stats(ns: NetNamespace, ifname: str) -> dict:
    """``ip -s link`` counters of one interface: {"rx": {...}, "tx": {...}} as iproute2's stats64."""
    return json.loads(ns.ip("-j", "-s", "link", "show", "dev", ifname))[0]["stats64"]


def _udp_counters() -> dict[str, int]:
    # /proc/self/net is the namespace of the process's main thread; thread-self is the calling thread's own.
    with open("/proc/thread-self/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def node_drops(lab: Lab) -> dict[int, dict[str, int]]:
    """Per node, the kernel's counters of packets lost between it and our process: UDP receive/send buffer
    overflows on the underlay socket, and packets the kernel could not queue to the TUN (``tx`` is kernel to us)."""
    out = {}
    for k in lab.node_numbers:
        udp = lab.node_ns(k).call_inside(_udp_counters)
        try:
            tun = link_stats(lab.node_ns(k), lab.tun_name(k))
        except RuntimeError:  # the node is not running: no TUN
            tun = {"rx": {"dropped": 0}, "tx": {"dropped": 0}}
        out[k] = {
            "udp_rcvbuf_errors": udp.get("RcvbufErrors", 0),
            "udp_sndbuf_errors": udp.get("SndbufErrors", 0),
            "tun_tx_dropped": tun["tx"]["dropped"],
            "tun_rx_dropped": tun["rx"]["dropped"],
        }
    return out


def drops_delta(before: dict, after: dict) -> dict[int, dict[str, int]]:
    return {k: {name: after[k][name] - before[k][name] for name in after[k]} for k in after}


def start_ready(ns: NetNamespace, argv: list[str], marker: str) -> subprocess.Popen:
    """Start a helper server inside ``ns`` and wait for the line that says it listens."""
    process = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if marker not in line:
        raise RuntimeError(f"{argv[1]} did not start in {ns.name}: {line!r} {process.stderr.read()[-500:]!r}")
    return process


# -- the nodes -----------------------------------------------------------------------------------------------


class Nodes:
    """One node_main process per lab node (as tests/anycast/test_lab_anycast.py starts them), with the echo
    service, small slices and a stats file each. ``stop()`` ends them with SIGTERM so they write final stats."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self) -> "Nodes":
        key_file = self.workdir / "cluster.key"
        key_file.write_text(generate_key_line(1) + "\n")
        key_file.chmod(0o600)  # a key file open to others is refused (tunnel/keys.py)
        lab = self.lab
        for k in lab.node_numbers:
            host, port = lab.node_underlay(k, 4)
            argv = [sys.executable, "-m", "tests.anycast.node_main", "--id", str(k), "--tun", lab.tun_name(k)]
            argv += ["--service", f"{lab.anycast(4)}/32", "--port", str(PORT), "--echo-port", str(ECHO_PORT)]
            argv += ["--listen", f"{host}:{port}", "--key-file", str(key_file), *SLICES]
            argv += ["--stats-file", str(self.stats_path(k))]
            for j in lab.node_numbers:
                if j != k:
                    argv += ["--peer", "{}={}:{}".format(j, *lab.node_underlay(j, 4))]
            with open(self.workdir / f"node{k}.log", "w") as log:
                self.processes[k] = lab.node_ns(k).popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        for k, process in self.processes.items():
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"node {k} did not start (exit {process.poll()}): {self.log_tail(k)}")
        return self

    def stats_path(self, k: int) -> Path:
        return self.workdir / f"node{k}.json"

    def log_tail(self, k: int) -> str:
        path = self.workdir / f"node{k}.log"
        return path.read_text()[-1000:] if path.exists() else ""

    def read(self, k: int) -> tuple[float, dict] | None:
        """(wall-clock time the node wrote it, stats) of node ``k``'s latest stats file."""
        path = self.stats_path(k)
        try:
            mtime = path.stat().st_mtime
            return mtime, json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def fresh(self, k: int, timeout: float = 5.0) -> dict:
        """Node ``k``'s stats as written after this call (it writes them every second)."""
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (got := self.read(k)) is not None and got[0] > since:
                return got[1]
            time.sleep(0.05)
        raise RuntimeError(f"node {k} wrote no stats for {timeout} s (exit {self.processes[k].poll()})")

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time (user + system) each node process has used so far."""
        out = {}
        for k, process in self.processes.items():
            with open(f"/proc/{process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[k] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return out

    def check_alive(self) -> None:
        for k, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"node {k} exited with {process.returncode}: {self.log_tail(k)}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def counter(stats: dict, name: str) -> int:
    return stats.get("counters", {}).get(name, 0)


# -- 1. forwarding rate --------------------------------------------------------------------------------------


def _open_capture(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def pure_ack_of(frame: bytes, dst: bytes, dport: int, sport: int) -> bytes | None:
    """``frame`` with fresh checksums if it is an IPv4 pure ACK (no data, no other flag) of the connection
    ``sport`` -> ``dst``:``dport``; None otherwise. The checksums are recomputed because a captured outgoing TCP
    segment may carry only the partial sum that checksum offload completes later."""
    if len(frame) < 34 or frame[12:14] != struct.pack("!H", ETH_P_IP):
        return None
    ip = bytearray(frame[14:])
    ihl, total = (ip[0] & 0x0F) * 4, struct.unpack_from("!H", ip, 2)[0]
    if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP or bytes(ip[16:20]) != dst or total > len(ip):
        return None
    tcp_len = total - ihl
    ports, offset, flags = struct.unpack_from("!I", ip, ihl)[0], (ip[ihl + 12] >> 4) * 4, ip[ihl + 13]
    if ports != (sport << 16 | dport) or flags != TCP_ACK or offset != tcp_len:
        return None
    ip = ip[:total]
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, internet_checksum(bytes(ip[:ihl])))
    struct.pack_into("!H", ip, ihl + 16, 0)
    tcp_sum = internet_checksum(bytes(ip[ihl:]), pseudo_header_sum(bytes(ip[12:16]), dst, 6, tcp_len))
    struct.pack_into("!H", ip, ihl + 16, tcp_sum)
    return frame[:14] + bytes(ip)


def capture_pure_ack(lab: Lab) -> tuple[socket.socket, bytes]:
    """Open a connection to the node's echo service (route on node 1: node 1 owns it), exchange one byte, and
    capture the client kernel's pure ACK of the echo: (the open connection, that Ethernet frame)."""
    ifname = lab.client_link[0]
    capture = lab.client.call_inside(_open_capture, ifname)
    with capture:
        conn = lab.client.call_inside(_connect, (lab.anycast(4), ECHO_PORT))
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            conn.sendall(b"x")
            if conn.recv(1) != b"x":
                raise RuntimeError("the node's echo service did not echo")
            time.sleep(0.3)  # the ACK of the echo is out by now, even if delayed
            sport, dst = conn.getsockname()[1], socket.inet_aton(lab.anycast(4))
            found = None
            while True:
                try:
                    frame, address = capture.recvfrom(65536)
                except BlockingIOError:
                    break
                if address[2] == PACKET_OUTGOING and (ack := pure_ack_of(frame, dst, ECHO_PORT, sport)):
                    found = ack
        except BaseException:
            conn.close()
            raise
    if found is None:
        conn.close()
        raise RuntimeError("captured no pure ACK of the client's echo connection")
    return conn, found


def blast(ifname: str, frame: bytes, seconds: float, pps: float) -> dict:
    """The generator (run inside the client namespace): send ``frame`` on ``ifname`` for ``seconds``, as fast as
    one Python thread can (``pps`` 0) or paced to ``pps``."""
    batch = 256
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only, receive nothing
    sock.bind((ifname, 0))
    send, clock = sock.send, time.perf_counter
    sent = errors = 0
    wall = time.time()
    started = clock()
    deadline = started + seconds
    while (now := clock()) < deadline:
        if pps and sent > (now - started) * pps:
            time.sleep(min(sent / pps - (now - started), deadline - now))
            continue
        for _ in range(batch):
            try:
                send(frame)
            except OSError:
                errors += 1
        sent += batch
    elapsed = clock() - started
    return {
        "sent": sent - errors,
        "errors": errors,
        "pps": pps,
        "seconds": elapsed,
        "started": wall,
        "ended": wall + elapsed,
    }


def rate_between(samples: list[tuple[float, dict]], name: str, start: float, end: float) -> float:
    """Counter ``name`` per second between the first and last stats written inside [start, end]."""
    inside = [(t, counter(s, name)) for t, s in samples if start <= t <= end]
    if len(inside) < 2:
        return math.nan
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / (t1 - t0)


def stream(lab: Lab, nodes: Nodes, frame: bytes, seconds: float, pps: float) -> dict:
    """One stream of ``frame`` from the client (route on node 2), with every counter on its way."""
    before = {k: nodes.fresh(k) for k in (1, 2)}
    drops_before, cpu_before = node_drops(lab), nodes.cpu_seconds()
    client_end, router_end = lab.client_link
    links = [router_end, lab.router_link(2), lab.router_link(1)]
    router_before = [link_stats(lab.router, link) for link in links]
    argv = [sys.executable, __file__, "helper", "blast", client_end, frame.hex(), str(seconds), str(pps)]
    generator = lab.client.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: dict[int, list[tuple[float, dict]]] = {1: [], 2: []}
    while generator.poll() is None:
        for k in (1, 2):
            got = nodes.read(k)
            if got is not None and (not samples[k] or got[0] > samples[k][-1][0]):
                samples[k].append(got)
        time.sleep(0.05)
    out, err = generator.communicate()
    cpu = {k: (after - cpu_before[k]) for k, after in nodes.cpu_seconds().items()}
    router = [link_stats(lab.router, link) for link in links]
    if generator.returncode != 0:
        raise RuntimeError(f"the generator failed: {err[-1000:]}")
    sent = json.loads(out)
    time.sleep(1.0)  # what the nodes still had queued
    after = {k: nodes.fresh(k) for k in (1, 2)}
    # Sustained: between stats written from 0.5 s into the stream to its end (the first ones fill the queues).
    # A node this busy writes its stats late; with fewer than two inside the stream, the totals stand in.
    window = (sent["started"] + 0.5, sent["ended"])
    forwarded = {
        name: counter(after[k], name) - counter(before[k], name)
        for k, name in ((2, "forwarded_out"), (1, "forwarded_in"))
    }
    rates = {
        name: rate
        if not math.isnan(rate := rate_between(samples[k], name, *window))
        else forwarded[name] / sent["seconds"]
        for k, name in ((2, "forwarded_out"), (1, "forwarded_in"))
    }
    host_drops = {
        k: {
            reason: n - before[k].get("host_drops", {}).get(reason, 0)
            for reason, n in after[k].get("host_drops", {}).items()
            if n != before[k].get("host_drops", {}).get(reason, 0)
        }
        for k in (1, 2)
    }
    return {
        "generator": sent,
        "generator_pps": sent["sent"] / sent["seconds"],
        "router_rx_from_client": router[0]["rx"]["packets"] - router_before[0]["rx"]["packets"],
        "router_rx_dropped": router[0]["rx"]["dropped"] - router_before[0]["rx"]["dropped"],
        "router_tx_to_node2": router[1]["tx"]["packets"] - router_before[1]["tx"]["packets"],
        "node1_replies": router[2]["rx"]["packets"] - router_before[2]["rx"]["packets"],
        "kernel_pps": (router[1]["tx"]["packets"] - router_before[1]["tx"]["packets"]) / sent["seconds"],
        "forwarded_out_pps": rates["forwarded_out"],
        "forwarded_in_pps": rates["forwarded_in"],
        **forwarded,
        "node2_send_errors": after[2]["peer_socket"]["send_errors"] - before[2]["peer_socket"]["send_errors"],
        "host_drops": host_drops,
        "node_cpu": {k: seconds / sent["seconds"] for k, seconds in cpu.items()},
        "drops": drops_delta(drops_before, node_drops(lab)),
    }


def forwarding(lab: Lab, nodes: Nodes, seconds: float, pps: float) -> dict:
    """Two streams: flat out (the generator's CPU competes with the nodes'), then paced at ``pps`` or, with 0,
    at 1.5 times what node 2 forwarded in the first (more than it took then, but leaving the nodes the CPU)."""
    lab.route_to(1)
    conn, frame = capture_pure_ack(lab)
    with conn:
        lab.route_to(2)
        try:
            flat = stream(lab, nodes, frame, seconds, 0)
            paced = stream(lab, nodes, frame, seconds, pps or round(1.5 * flat["forwarded_out_pps"], -2))
        finally:
            lab.route_to(1)
    return {"frame_bytes": len(frame), "seconds": seconds, "flat_out": flat, "paced": paced}


# -- 2. forwarded round trip ---------------------------------------------------------------------------------


def echo_rtts(sock: socket.socket, rounds: int, size: int, warmup: int) -> list[float]:
    """Round trips of ``size`` bytes (microseconds), after ``warmup`` unmeasured ones."""
    message, buffer = b"r" * size, bytearray(size)
    view, clock = memoryview(buffer), time.perf_counter_ns
    out = []
    for i in range(warmup + rounds):
        started = clock()
        sock.sendall(message)
        got = 0
        while got < size:
            n = sock.recv_into(view[got:])
            if not n:
                raise RuntimeError("the echo server closed the connection")
            got += n
        if i >= warmup:
            out.append((clock() - started) / 1e3)
    return out


def echo_bulk(sock: socket.socket, nbytes: int) -> float:
    """Mbit/s of a bulk upload through an echo service: a thread sends ``nbytes`` while this one reads the echo back,
    so the upload (the direction the tunnel carries when the route is on another node) sets the pace."""
    payload, buffer = bytes(nbytes), bytearray(1 << 20)
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    started = time.perf_counter()
    sender.start()
    got = 0
    while got < nbytes:
        n = sock.recv_into(buffer)
        if not n:
            raise RuntimeError("the echo server closed the connection")
        got += n
    sender.join()
    return nbytes * 8 / (time.perf_counter() - started) / 1e6


def round_trips(lab: Lab, rounds: int, size: int, bulk_bytes: int) -> dict:
    """The three cases in turn, ROUND_BLOCKS blocks each, so that a slow spell of the machine (a VM's, say) falls
    on all of them alike rather than on whichever ran then."""
    lab.route_to(1)
    argv = [sys.executable, str(PEER), "serve", str(KERNEL_ECHO_PORT), "echo"]
    server = start_ready(lab.node_ns(1), argv, "listen")
    rtts: dict[str, list[float]] = {"direct": [], "forwarded": [], "kernel": []}
    try:
        with (
            lab.client.call_inside(_connect, (lab.anycast(4), ECHO_PORT)) as ours,
            lab.client.call_inside(_connect, (REFERENCE, KERNEL_ECHO_PORT)) as kernel,
        ):
            for block in range(ROUND_BLOCKS):
                n = rounds // ROUND_BLOCKS + (block < rounds % ROUND_BLOCKS)
                lab.route_to(1)
                rtts["direct"] += echo_rtts(ours, n, size, WARMUP_ROUNDS)
                lab.route_to(2)
                rtts["forwarded"] += echo_rtts(ours, n, size, WARMUP_ROUNDS)
                rtts["kernel"] += echo_rtts(kernel, n, size, WARMUP_ROUNDS)
            lab.route_to(1)
            bulk = {"direct": echo_bulk(ours, bulk_bytes)}
            lab.route_to(2)
            bulk["forwarded"] = echo_bulk(ours, bulk_bytes)
            bulk["kernel"] = echo_bulk(kernel, bulk_bytes)
            lab.route_to(1)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()
    return {**{name: summary(values) for name, values in rtts.items()}, "bulk_mbit": bulk, "bulk_bytes": bulk_bytes}


# -- 3. claims -----------------------------------------------------------------------------------------------


def run_downloads(lab: Lab, address: str, port: int, connections: int, nbytes: int) -> dict:
    argv = [sys.executable, str(CLIENT), address, str(port), "--connections", str(connections)]
    argv += ["--bytes", str(nbytes), "--timeout", "15"]
    done = lab.client.run(argv, capture_output=True, text=True, timeout=600)
    if not done.stdout:
        raise RuntimeError(f"the download client printed nothing (exit {done.returncode}): {done.stderr[-1000:]}")
    result = json.loads(done.stdout)
    result.pop("connections")
    return result


def _udp_socket(bind: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(bind)
    sock.settimeout(2.0)
    return sock


def udp_rtts(lab: Lab, rounds: int) -> list[float]:
    """Kernel UDP round trips node 1 -> node 2 -> node 1 over the underlay (microseconds)."""
    host2 = lab.node_underlay(2, 4)[0]
    argv = [sys.executable, __file__, "helper", "udp-echo", host2, str(UDP_ECHO_PORT)]
    server = start_ready(lab.node_ns(2), argv, "ready")
    try:
        with lab.node_ns(1).call_inside(_udp_socket, (lab.node_underlay(1, 4)[0], 0)) as sock:
            sock.connect((host2, UDP_ECHO_PORT))
            clock, out = time.perf_counter_ns, []
            for i in range(WARMUP_ROUNDS + rounds):
                started = clock()
                sock.send(b"c" * 64)
                sock.recv(2048)
                if i >= WARMUP_ROUNDS:
                    out.append((clock() - started) / 1e3)
    finally:
        server.kill()
        server.communicate()
    return out


def claims(lab: Lab, nodes: Nodes, connections: int, nbytes: int, flip_interval: float) -> dict:
    lab.route_to(1)
    before = {k: nodes.fresh(k) for k in lab.node_numbers}
    drops_before, cpu_before = node_drops(lab), nodes.cpu_seconds()
    flips = 0
    if flip_interval > 0:
        with lab.flipper(flip_interval) as flipper:
            ours = run_downloads(lab, lab.anycast(4), PORT, connections, nbytes)
        flips = flipper.flips
    else:
        ours = run_downloads(lab, lab.anycast(4), PORT, connections, nbytes)
    cpu = {k: (seconds - cpu_before[k]) / ours["elapsed"] for k, seconds in nodes.cpu_seconds().items()}
    lab.route_to(1)
    after = {k: nodes.fresh(k) for k in lab.node_numbers}
    drops = drops_delta(drops_before, node_drops(lab))
    rtts, per_node = [], {}
    for k in lab.node_numbers:
        new = after[k]["claim_rtts"][len(before[k]["claim_rtts"]) :]
        rtts += new
        per_node[k] = len(new)
    names = {name for k in lab.node_numbers for name in after[k]["counters"]}
    totals = {
        name: sum(counter(after[k], name) - counter(before[k], name) for k in lab.node_numbers)
        for name in sorted(names | {"claims_made", "claims_waiting_for_room", "control_retransmits", "forwarded_out"})
    }
    server = start_ready(
        lab.node_ns(1), [sys.executable, str(PATTERN_SERVER), str(KERNEL_PATTERN_PORT)], str(KERNEL_PATTERN_PORT)
    )
    try:
        kernel = run_downloads(lab, REFERENCE, KERNEL_PATTERN_PORT, connections, nbytes)
    finally:
        server.kill()
        server.communicate()
    return {
        "claim_rtt_ms": summary([r * 1e3 for r in rtts]),
        "claims_per_node": per_node,
        "totals": totals,
        "flips": flips,
        "node_cpu": cpu,
        "ours": ours,
        "kernel": kernel,
        "drops": drops,
        "udp_rtt_us": summary(udp_rtts(lab, 1000)),
    }


# -- report --------------------------------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "event_loop": loop,
    }


def print_drops(drops: dict) -> None:
    for k, row in drops.items():
        print(
            f"    node {k}: UDP RcvbufErrors {row['udp_rcvbuf_errors']:,}, SndbufErrors {row['udp_sndbuf_errors']:,}; "
            f"TUN tx dropped {row['tun_tx_dropped']:,}, rx dropped {row['tun_rx_dropped']:,}"
        )


def report(args: argparse.Namespace, results: dict) -> None:
    m = results["machine"]
    print(f"machine: {m['cpus']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']}, {m['event_loop']}")
    print(f"command: {results['command']}")

    f = results["forwarding"]
    streams = {"flat out": f["flat_out"], f"paced to {f['paced']['generator']['pps']:,.0f}/s": f["paced"]}
    print(
        f"\n1. forwarding: node 2 forwards node 1's ACKs ({f['frame_bytes']}-byte frames, {f['seconds']:g} s a stream)"
    )
    print(f"{'':58}" + "".join(f" {name:>20}" for name in streams))
    print(f"{'':58}" + f" {'packets/s':>12} {'ratio':>7}" * len(streams))
    rows = [
        ("generator sent (client, AF_PACKET, one Python thread)", "generator_pps", False),
        ("Linux router forwarded to node 2 (kernel reference)", "kernel_pps", False),
        ("node 2 forwarded over the tunnel (forwarded_out, sustained)", "forwarded_out_pps", True),
        ("node 1 received forwarded (forwarded_in, sustained)", "forwarded_in_pps", True),
    ]
    for name, key, ratio in rows:
        cells = "".join(
            f" {row[key]:12,.0f} " + (f"{row[key] / row['kernel_pps']:7.3f}" if ratio else " " * 7)
            for row in streams.values()
        )
        print(f"  {name:56}{cells}")
    cpu = "".join(f" {row['node_cpu'][2]:11.0%} / {row['node_cpu'][1]:4.0%}" for row in streams.values())
    print(f"  {'CPU of node 2 / node 1 (share of one CPU)':56}{cpu}")
    for label, row in streams.items():
        g = row["generator"]
        print(
            f"  {label}: sent {g['sent']:,}, router got {row['router_rx_from_client']:,} (dropped "
            f"{row['router_rx_dropped']:,}), passed {row['router_tx_to_node2']:,} to node 2; node 2 forwarded "
            f"{row['forwarded_out']:,} (send errors {row['node2_send_errors']:,}), node 1 received "
            f"{row['forwarded_in']:,}; node 1 sent the client {row['node1_replies']:,} packets in reply; "
            f"stack drops {row['host_drops']}"
        )
        if row["forwarded_out"] >= 0.99 * row["router_tx_to_node2"]:
            print("    node 2 kept up with this stream: its capacity is above this rate")
        print_drops(row["drops"])
    best = max(row["forwarded_out_pps"] for row in streams.values())
    floor = f["flat_out"]["kernel_pps"]
    print(
        f"  node 2 forwarded at most {best:,.0f}/s; the router's kernel forwarded all it was offered, at least "
        f"{floor:,.0f}/s (flat out): ratio at most {best / floor:.3f}"
    )

    r = results["round_trips"]
    print(f"\n2. round trip of {args.size} bytes, {args.rounds} rounds, kernel client with TCP_NODELAY")
    print(f"{'':58} {'median µs':>10} {'p99 µs':>10} {'× kernel':>9}")
    kernel_median = r["kernel"]["median"]
    for name, key in (
        ("anycast-tcp, route on the owner (direct)", "direct"),
        ("anycast-tcp, route on node 2 (forwarded over the tunnel)", "forwarded"),
        ("Linux kernel echo server on node 1 (reference)", "kernel"),
    ):
        row = r[key]
        print(f"  {name:56} {row['median']:10,.0f} {row['p99']:10,.0f} {row['median'] / kernel_median:9.2f}")
    extra_median = r["forwarded"]["median"] - r["direct"]["median"]
    extra_p99 = r["forwarded"]["p99"] - r["direct"]["p99"]
    print(f"  forwarding adds {extra_median:,.0f} µs at the median, {extra_p99:,.0f} µs at p99")
    bulk = r["bulk_mbit"]
    print(f"  bulk upload of {r['bulk_bytes'] / 1e6:,.0f} MB through the same echo services (Mbit/s): direct "
          f"{bulk['direct']:,.0f}, forwarded over the tunnel {bulk['forwarded']:,.0f}, kernel {bulk['kernel']:,.0f} "
          f"(forwarded / kernel {bulk['forwarded'] / bulk['kernel']:.3f})")  # fmt: skip

    c = results["claims"]
    rtt, ours, kernel = c["claim_rtt_ms"], c["ours"], c["kernel"]
    flips = f", route flipped every {args.flip_interval:g} s ({c['flips']} flips)" if args.flip_interval else ""
    print(f"\n3. claims: {args.connections} concurrent downloads of {args.download_mib:g} MiB, 4 MiB slices{flips}")
    print(
        f"  claim round trip: {rtt['count']} claims acknowledged (made {c['totals']['claims_made']}, per node "
        f"{c['claims_per_node']}), median {rtt['median']:.0f} ms, p99 {rtt['p99']:.0f} ms, max {rtt['max']:.0f} ms"
    )
    print("  (timed on the node's event-loop clock: uvloop's has a 1 ms resolution and stands still during a turn)")
    u = c["udp_rtt_us"]
    print(
        f"  kernel UDP round trip node 1 -> node 2 over the underlay (reference floor): median {u['median']:.0f} µs,"
        f" p99 {u['p99']:.0f} µs"
    )
    print(f"{'':58} {'Mbit/s':>12} {'ratio':>7}")
    for name, row in (("anycast-tcp nodes", ours), ("Linux kernel pattern server on node 1", kernel)):
        exact = f"{row['exact']}/{args.connections} exact in {row['elapsed']:.1f} s"
        errors = f", errors {row['errors']}" if row["errors"] else ""
        ratio = row["gbit_s"] / kernel["gbit_s"]
        print(f"  {name:56} {row['gbit_s'] * 1000:12,.0f} {ratio:7.3f}  {exact}{errors}")
    t = c["totals"]
    reasons = {name: n for name, n in t.items() if n and name.startswith(("forward_", "flooded", "owner_reset"))}
    print(
        f"  claims waiting for room {t['claims_waiting_for_room']}, control retransmits {t['control_retransmits']},"
        f" forwarded {t['forwarded_out']:,} {reasons}; node CPU (share of one CPU): "
        + ", ".join(f"node {k} {share:.0%}" for k, share in c["node_cpu"].items())
    )
    print_drops(c["drops"])


def run(args: argparse.Namespace, workdir: Path) -> dict:
    results = {"machine": machine(), "command": shlex.join([sys.executable, *sys.argv])}
    with Lab.build(nodes=3, prefix="abn", net=NET) as lab:
        # The kernel reference service: a second address on node 1's lo, routed there by the router.
        lab.node_ns(1).ip("addr", "add", f"{REFERENCE}/32", "dev", "lo")
        lab.router.ip("route", "add", f"{REFERENCE}/32", "via", lab.node_address(1, 4))
        nodes = Nodes(lab, workdir)
        try:
            nodes.start()
            results["forwarding"] = forwarding(lab, nodes, args.blast_seconds, args.blast_pps)
            nodes.check_alive()
            results["round_trips"] = round_trips(lab, args.rounds, args.size, int(args.bulk_mb * 1e6))
            nodes.check_alive()
            nbytes = int(args.download_mib * MiB)
            results["claims"] = claims(lab, nodes, args.connections, nbytes, args.flip_interval)
            nodes.check_alive()
        finally:
            nodes.stop()
    return results


def helper(argv: list[str]) -> None:
    """The bench's own helper processes, run inside a lab namespace."""
    if argv[0] == "blast":
        ifname, frame, seconds, pps = argv[1], bytes.fromhex(argv[2]), float(argv[3]), float(argv[4])
        print(json.dumps(blast(ifname, frame, seconds, pps)), flush=True)
    elif argv[0] == "udp-echo":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((argv[1], int(argv[2])))
            print("ready", flush=True)
            while True:
                data, address = sock.recvfrom(2048)
                sock.sendto(data, address)
    else:
        raise SystemExit(f"unknown helper {argv[0]!r}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blast-seconds", type=float, default=5.0, help="length of the forwarding stream")
    parser.add_argument(
        "--blast-pps", type=float, default=0, help="rate of the paced stream (packets/s); 0: 1.5 x the flat-out result"
    )
    parser.add_argument("--rounds", type=int, default=2000, help="echo round trips per case")
    parser.add_argument("--size", type=int, default=64, help="bytes per echo round trip")
    parser.add_argument("--bulk-mb", type=float, default=100, help="MB of the bulk upload through the echo services")
    parser.add_argument("--connections", type=int, default=100, help="concurrent downloads in the claims run")
    parser.add_argument("--download-mib", type=float, default=6, help="MiB per download (> 3.5 makes a claim)")
    parser.add_argument("--flip-interval", type=float, default=0, help="move the route this often in the claims run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_anycast.py needs root: it creates network namespaces and TUN devices")
    # SIGTERM unwinds like Ctrl-C, through the context managers that remove the lab.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-anycast-") as workdir:
        results = run(args, Path(workdir))
    report(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["helper"]:
        helper(sys.argv[2:])
    else:
        try:
            main()
        except KeyboardInterrupt:
            sys.exit("interrupted (the lab's namespaces and processes are gone)")
