"""Congestion control and loss recovery on a simulated path: a bottleneck of fixed bandwidth, propagation
delay, a finite drop-tail queue and, where a test says so, random or scheduled loss.

All on the virtual clock: the figures are properties of the algorithms, not of the machine running them.
"""

import dataclasses
import math

import pytest

from stack.host import Host
from stack.tcp.config import TcpConfig
from stack.tcp.events import Closed, DataReceived, Established, SendSpace
from stack.testing import LinkFaults, Network

pytestmark = pytest.mark.slow

MBIT = 1_000_000 / 8  # bytes per second
BIG_BUFFERS = TcpConfig(send_buffer=4 << 20, receive_buffer=4 << 20)


class Flow:
    """One bulk transfer from a client host to a server host; counts what arrives and when."""

    def __init__(self, net: Network, client: Host, server_addr: str, port: int, size: int, config: TcpConfig):
        self.net, self.size, self.sent = net, size, 0
        self.received = 0
        self.arrivals: list[tuple[float, int]] = []
        self.closed = False
        self.block = b"\x5a" * 65536
        self.conn = client.connect(server_addr, port, net.now, config=config)

    def pump(self) -> None:
        while self.sent < self.size:
            n = self.conn.send(self.block[: self.size - self.sent])
            if not n:
                return
            self.sent += n

    def bytes_between(self, start: float, end: float) -> int:
        return sum(n for t, n in self.arrivals if start <= t < end)


def path(bandwidth: float, rtt: float, queue: int, *, loss: float = 0.0, drop=frozenset(), seed=1):
    """Two hosts: ``a`` sends over the bottleneck a->b; ACKs come back on an unconstrained b->a link."""
    net = Network(seed=seed)
    flows: dict[int, Flow] = {}  # by client port

    def client_app(host, conn, event):
        flow = flows.get(conn.local_port)
        if flow is not None and isinstance(event, Established | SendSpace):
            flow.pump()

    def server_app(host, conn, event):
        flow = flows.get(conn.remote_port)
        if isinstance(event, DataReceived) and flow is not None:
            flow.received += len(event.data)
            flow.arrivals.append((net.now, len(event.data)))
        elif isinstance(event, Closed) and flow is not None:
            flow.closed = True

    a = net.add_host("a", Host(["10.0.0.1"], secret=b"a" * 16, config=BIG_BUFFERS), app=client_app)
    b = net.add_host("b", Host(["10.0.0.2"], secret=b"b" * 16, config=BIG_BUFFERS), app=server_app)
    b.listen(5001)
    there = LinkFaults(delay=rtt / 2, bandwidth=bandwidth, queue_bytes=queue, loss=loss, drop=drop)
    net.connect("a", "b", there, LinkFaults(delay=rtt / 2))
    return net, a, flows


def start(net, a, flows, size, config=BIG_BUFFERS) -> Flow:
    flow = Flow(net, a, "10.0.0.2", 5001, size, config)
    flows[flow.conn.local_port] = flow
    return flow


def test_cubic_fills_a_100_mbit_50_ms_path_without_loss():
    """No random loss on the path. Slow start ends with one overflow of the BDP-sized queue (an unpaced sender's
    bursts defeat HyStart++'s delay signal: see the note in docs/conformance.md); after that CUBIC holds the
    path full without a single further drop."""
    bandwidth, rtt = 100 * MBIT, 0.05
    bdp = int(bandwidth * rtt)
    net, a, flows = path(bandwidth, rtt, queue=bdp)
    flow = start(net, a, flows, size=10**9)
    net.run(until=lambda: net.now >= 2.0)
    link = net.links[("a", "b")]
    drops_after_slow_start, retransmits = link.queue_drops, flow.conn.tx.retransmits
    net.run(until=lambda: net.now >= 8.0)
    utilisation = flow.bytes_between(2.0, 8.0) / (bandwidth * 6.0)
    assert link.lost == 0
    assert link.queue_drops == drops_after_slow_start and flow.conn.tx.retransmits == retransmits
    assert flow.conn.tx.cc.name == "cubic"
    assert utilisation >= 0.85, f"utilisation {utilisation:.2%}"


def test_three_drops_in_one_window_are_repaired_by_sack_recovery_without_an_rto():
    net, a, flows = path(20 * MBIT, 0.04, queue=1 << 20, drop=frozenset({150, 153, 156}))
    flow = start(net, a, flows, size=2_000_000)
    net.run(until=lambda: flow.received >= flow.size, max_time=60)
    tx = flow.conn.tx
    assert flow.received == flow.size
    assert net.links[("a", "b")].lost == 3
    assert tx.rto_count == 0
    assert tx.recoveries == 1
    assert tx.retransmits == 3


def test_three_drops_without_sack_use_newreno_partial_acks_without_an_rto():
    config = dataclasses.replace(BIG_BUFFERS, sack=False)
    net, a, flows = path(20 * MBIT, 0.04, queue=1 << 20, drop=frozenset({150, 153, 156}))
    flow = start(net, a, flows, size=2_000_000, config=config)
    net.run(until=lambda: flow.received >= flow.size, max_time=60)
    tx = flow.conn.tx
    assert flow.received == flow.size
    assert not tx.sack_ok
    assert tx.rto_count == 0
    assert tx.recoveries == 1


@pytest.mark.parametrize("algorithm", ["cubic", "reno"])
def test_goodput_at_1_percent_random_loss_is_within_a_factor_of_2_of_the_mathis_bound(algorithm):
    rtt, loss = 0.05, 0.01
    config = dataclasses.replace(BIG_BUFFERS, congestion_control=algorithm)
    net, a, flows = path(100 * MBIT, rtt, queue=1 << 20, loss=loss, seed=7)
    flow = start(net, a, flows, size=10**9, config=config)
    net.run(until=lambda: net.now >= 120.0)
    goodput = flow.bytes_between(10.0, 120.0) / 110.0
    mss = flow.conn.tx.eff_mss
    mathis = mss / rtt * math.sqrt(3 / 2) / math.sqrt(loss)  # Mathis et al. 1997, C = sqrt(3/2)
    assert 0.5 <= goodput / mathis <= 2.0, f"goodput {goodput:.0f} B/s against the Mathis bound {mathis:.0f} B/s"


def test_reno_and_cubic_sharing_a_bottleneck_both_make_progress():
    bandwidth, rtt = 20 * MBIT, 0.04
    net, a, flows = path(bandwidth, rtt, queue=int(bandwidth * rtt))
    reno = start(net, a, flows, size=10**9, config=dataclasses.replace(BIG_BUFFERS, congestion_control="reno"))
    cubic = start(net, a, flows, size=10**9, config=dataclasses.replace(BIG_BUFFERS, congestion_control="cubic"))
    net.run(until=lambda: net.now >= 30.0)
    shares = [f.bytes_between(5.0, 30.0) / (bandwidth * 25.0) for f in (reno, cubic)]
    assert all(share >= 0.1 for share in shares), shares
    assert sum(shares) >= 0.8, shares
