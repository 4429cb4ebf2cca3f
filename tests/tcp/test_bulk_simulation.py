"""The core issue's acceptance run: 20 MB each way at once over 5% loss, 2% duplication, 5% reordering and
0.1% corruption, byte-exact, on the virtual clock."""

import random

import pytest

from stack.host import Host
from stack.testing import BulkEndpoint, LinkFaults, Network

pytestmark = pytest.mark.slow

SIZE = 20 * 1000 * 1000
FAULTS = LinkFaults(loss=0.05, duplicate=0.02, reorder=0.05, corrupt=0.001, delay=0.01)


@pytest.mark.parametrize("family", [4, 6])
def test_20mb_each_way_at_once_over_a_faulty_link_is_byte_exact(family):
    bulk_each_way(family, SIZE, tso_limit=0)


@pytest.mark.parametrize("family", [4, 6])
def test_super_segments_cut_by_the_device_keep_sack_and_recovery_exact(family):
    """With segmentation offload the sender joins MSS-sized segments into super-segments that the link cuts
    apart again (stack/wire/tso.py); loss, duplication and reordering then hit the pieces, and every piece must
    still be SACKed, found lost and retransmitted on its own."""
    bulk_each_way(family, SIZE // 4, tso_limit=65455)


def bulk_each_way(family: int, size: int, tso_limit: int) -> None:
    rng = random.Random(family)
    a_data, b_data = rng.randbytes(size), rng.randbytes(size)
    addrs = ("10.0.0.1", "10.0.0.2") if family == 4 else ("fd00::1", "fd00::2")
    net = Network(seed=f"bulk{family}")
    a, b = BulkEndpoint(a_data), BulkEndpoint(b_data)
    hosts = Host([addrs[0]], secret=b"a" * 16), Host([addrs[1]], secret=b"b" * 16)
    for host in hosts:
        host.tso_limit = tso_limit
    client = net.add_host("a", hosts[0], app=lambda h, c, e: a.on_event(c, e, net.now))
    server = net.add_host("b", hosts[1], app=lambda h, c, e: b.on_event(c, e, net.now))
    server.listen(9000)
    net.connect("a", "b", FAULTS)
    client.connect(addrs[1], 9000, 0.0)
    net.run(until=lambda: a.closed is not None and b.closed is not None, max_time=7200)
    assert a.received_exactly(b_data) and b.received_exactly(a_data)
    assert a.peer_closed and b.peer_closed
    assert (net.super_segments > 0) == (tso_limit > 0)
    link = net.links[("a", "b")]
    assert link.lost and link.duplicated and link.reordered and link.corrupted  # the faults really happened
    assert client.drops["bad_tcp"] + server.drops["bad_tcp"] + client.drops["bad_ip"] + server.drops["bad_ip"] > 0
