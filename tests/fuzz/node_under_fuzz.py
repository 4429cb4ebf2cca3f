"""The node both node fuzzers feed (tests/appliance/test_node_fuzz.py, tests/fuzz/fuzz_node.py): node 1 of a
4-range cluster with peers 2 and 3, listening on port 80 of the service address."""

from appliance.node import AnycastNode, ClusterConfig
from tunnel.keys import ClusterKeys

SERVICE = bytes([192, 0, 2, 10])
KEYS = ClusterKeys(send_id=1, keys={1: bytes(range(32))})
PEERS = {2: ("10.255.0.2", 6080), 3: ("10.255.0.3", 6080)}


def make_node(backlog: int) -> AnycastNode:
    node = AnycastNode(
        ["192.0.2.10"],
        cluster=ClusterConfig(node_id=1, ranges=4, headroom=1 << 22, hwm_margin=1 << 20),
        peers=PEERS,
        keys=KEYS,
        incarnation=1,
        secret=bytes(32),
        now=0.0,
    )
    node.listen(80, backlog=backlog)
    return node
