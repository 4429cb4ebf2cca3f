"""The anycast node on the event loop, without namespaces: two AnycastStacks on in-memory devices with real UDP
between them on loopback, a client Stack, and a little router moving the client's packets between the nodes
every few milliseconds. Proves the asyncio wiring (peer socket, heartbeats, forwarding, claims) end to end; the
namespace lab (tests/anycast) does the same with the kernel as client."""

import asyncio
import random

from appliance.aio import AnycastStack
from appliance.node import ClusterConfig
from appliance.peers import ControlTiming, Liveness
from stack.aio.stack import Stack
from stack.tcp.config import TcpConfig
from tunnel.keys import ClusterKeys
from tunnel.memory import MemoryDevice
from tunnel.peer import PeerSocket

from .cluster_apps import pattern

KiB, MiB = 1 << 10, 1 << 20
SERVICE, CLIENT = "192.0.2.10", "10.9.0.2"
CONFIG = TcpConfig(msl=0.1)
TIMING = ControlTiming(heartbeat_interval=0.05, dead_after=1.0, initial_rto=0.05, min_rto=0.02)


class Router:
    """Client packets go to the node the route points at now; node packets go to the client."""

    def __init__(self, client_end: MemoryDevice, node_ends: list[MemoryDevice], seed: int) -> None:
        self.client_end, self.node_ends = client_end, node_ends
        self.current = 0
        self.rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        client_end.on_readable = lambda: loop.call_soon(self._from_client)
        for end in node_ends:
            end.on_readable = lambda end=end: loop.call_soon(self._from_node, end)

    def _from_client(self) -> None:
        while packets := self.client_end.read_batch(256):
            for packet in packets:
                self.node_ends[self.current].write(packet)

    def _from_node(self, end: MemoryDevice) -> None:
        while packets := end.read_batch(256):
            self.client_end.write_batch(packets)

    async def flip_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.current = (self.current + 1) % len(self.node_ends)


async def serve(reader, writer) -> None:
    size = int.from_bytes(await reader.readexactly(8), "big")
    for offset in range(0, size, 64 * KiB):
        writer.write(pattern(offset, min(64 * KiB, size - offset)))
        await writer.drain()
    writer.close()


def test_download_through_two_nodes_while_the_route_flips():
    asyncio.run(asyncio.wait_for(download_through_two_nodes(), 90))


async def download_through_two_nodes():
    keys = ClusterKeys(send_id=1, keys={1: bytes(range(32))})
    ports = []
    for _ in range(2):  # two free UDP ports on loopback
        sock = await PeerSocket.open(("127.0.0.1", 0), lambda data, addr: None)
        ports.append(sock.local_address[1])
        sock.close()
    underlay = {1: ("127.0.0.1", ports[0]), 2: ("127.0.0.1", ports[1])}
    client_end, client_device = MemoryDevice.pair()
    nodes = []
    router_ends = []
    for node_id in (1, 2):
        router_end, node_device = MemoryDevice.pair()
        router_ends.append(router_end)
        cluster = ClusterConfig(node_id=node_id, ranges=4096, headroom=384 * KiB, hwm_margin=192 * KiB, timing=TIMING)
        node = AnycastStack(
            node_device,
            [f"{SERVICE}/32"],
            cluster=cluster,
            peers={i: a for i, a in underlay.items() if i != node_id},
            keys=keys,
            config=CONFIG,
        )
        await node.open_peer_socket(underlay[node_id])
        await node.start_server(serve, SERVICE, 80)
        nodes.append(node)
    client = Stack(client_device, [f"{CLIENT}/24"], config=CONFIG)
    router = Router(client_end, router_ends, seed=1)
    flipper = asyncio.create_task(router.flip_every(0.01))
    try:
        await asyncio.sleep(0.2)  # heartbeats
        assert all(peer.liveness is Liveness.ALIVE for n in nodes for peer in n.node.peers.values())
        reader, writer = await client.open_connection(SERVICE, 80)
        size = 4 * MiB
        writer.write(size.to_bytes(8, "big"))
        received = await asyncio.wait_for(reader.read(-1), 60)
        writer.close()
        assert len(received) == size and received == pattern(0, size)
        await asyncio.sleep(0.5)  # TIME-WAIT and the release
        counters = [n.node.counters for n in nodes]
        assert sum(c["forwarded_out"] for c in counters) > 10
        assert sum(c["claims_made"] for c in counters) == 1
        assert sum(c["claims_released"] for c in counters) == 1
        assert all(len(n.node.claims) == 0 and not n.node.own for n in nodes)
        assert all(n.socket.stats.send_errors == 0 for n in nodes)
    finally:
        flipper.cancel()
        await client.close()
        for node in nodes:
            await node.close()
