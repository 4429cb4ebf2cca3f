"""Anycast in simulation: several anycast nodes behind a simulated router, on a ``stack.testing.SimNetwork``, so
services can be property-tested under route flaps, node crashes and a faulty cluster network before deploying.

    async def main():
        net = SimNetwork(seed=3)
        cluster = SimCluster(net, nodes=3)                       # node1..node3 share 192.0.2.10
        await cluster.start_server(handle, 8080)                 # the service, on every node (and after restarts)
        client = net.add_host("client", "198.51.100.7")
        reader, writer = await client.open_connection(cluster.service, 8080)
        cluster.move(2)                                          # the route moves: packets now land on node 2
        cluster.kill(1); cluster.restart(1)

    stack.testing.run(main())

Each node is the real ``AnycastStack`` (the one ``anycast-tcp run`` drives) on a simulated device, with its tunnel
to the others as datagrams between the nodes' underlay addresses, over links that ``net.set_link("node1",
"node2", loss=0.2)`` or ``net.partition`` impair like any other. The router sends each client's packets to one
node at a time: where ``move`` says, or, with ``mean_dwell``, a node drawn afresh after a random dwell.
"""

import random
from collections.abc import Callable

from stack.addresses import packed
from stack.testing.network import SimHost, SimNetwork
from tunnel.keys import ClusterKeys

from .aio import AnycastStack
from .node import ClusterConfig
from .sim import SERVICE_V4, UNDERLAY_PORT, Router

Service = tuple[Callable, int, dict]


class SimPeerSocket:
    """The node's UDP socket to its peers, as datagrams on the simulated network (``tunnel.peer.PeerSocket``)."""

    def __init__(self, host: SimHost, local: tuple[str, int]) -> None:
        self.host = host
        self.local_address = local

    def sendto(self, data: bytes, address: tuple) -> bool:
        return self.host.send_datagram(data, self.local_address, address)

    def close(self) -> None:
        pass


class SimCluster:
    def __init__(
        self,
        net: SimNetwork,
        *,
        nodes: int = 3,
        service: str = SERVICE_V4,
        mean_dwell: float | None = None,
        flap: float = 0.0,
        name: str = "node",
        **cluster_options,
    ) -> None:
        """``nodes`` anycast nodes named ``node1``.. on ``net``, all holding ``service``. ``mean_dwell``: each
        client's route moves to a random node after an exponential dwell of that mean (None: only ``move`` moves
        it); ``flap``: the probability that a single packet strays to a random node. ``cluster_options`` are
        ``ClusterConfig``'s (``headroom``, ``hwm_margin``, ``dead_owner``, ``timing``...); ``ranges`` defaults to
        the smallest power of two that holds the nodes."""
        if nodes < 1:
            raise ValueError(f"nodes={nodes}: a cluster needs at least one node")
        self.net = net
        self.service = service
        self.node_ids = list(range(1, nodes + 1))
        self.names = {i: f"{name}{i}" for i in self.node_ids}
        self.router = Router(self.node_ids, f"{net.seed}:{name}", mean_dwell, flap)
        cluster_options.setdefault("ranges", max(2, 1 << (nodes - 1).bit_length()))
        self._cluster_options = cluster_options
        self._keys = ClusterKeys(send_id=1, keys={1: random.Random(f"{net.seed}:{name}:key").randbytes(32)})
        v6 = len(packed(service)) == 16
        self._underlay = {i: (f"fd00:ffff::{i}" if v6 else f"10.255.0.{i}", UNDERLAY_PORT) for i in self.node_ids}
        self._services: list[Service] = []
        self.stacks: dict[int, AnycastStack] = {}
        self._started: dict[int, int] = {}  # how many of the services each node's current stack serves
        net.route(service, self._route)
        self.hosts: dict[int, SimHost] = {
            i: net.add_host(
                self.names[i],
                service,
                main=lambda host, node_id=i: self._serve(node_id),
                datagram_addresses=[self._underlay[i][0]],
                stack_factory=self._factory(i),
            )
            for i in self.node_ids
        }

    def _factory(self, node_id: int) -> Callable[..., AnycastStack]:
        def make(device, addresses, *, config, secret) -> AnycastStack:
            host = self.net.host(self.names[node_id])
            underlay = self._underlay[node_id]
            cluster = ClusterConfig(node_id=node_id, underlay_ipv6=":" in underlay[0], **self._cluster_options)
            stack = AnycastStack(
                device,
                addresses,
                cluster=cluster,
                peers={i: a for i, a in self._underlay.items() if i != node_id},
                keys=self._keys,
                config=config,
                secret=secret,
                incarnation=host.incarnation,
            )
            stack.socket = SimPeerSocket(host, underlay)
            host.on_datagram = stack._on_datagram
            self.stacks[node_id] = stack
            self._started[node_id] = 0
            return stack

        return make

    async def _serve(self, node_id: int) -> None:
        stack = self.stacks[node_id]
        while self._started[node_id] < len(self._services):
            callback, port, options = self._services[self._started[node_id]]
            self._started[node_id] += 1
            await stack.start_server(callback, None, port, **options)

    def _route(self, sender: str, packet: bytes) -> str:
        client = packet[12:16] if packet[0] >> 4 == 4 else packet[8:24]
        return self.names[self.router.pick(client, self.net.loop.time())]

    # -- services -------------------------------------------------------------------------------------------

    async def start_server(self, client_connected_cb, port: int, **options) -> None:
        """Serve ``port`` of the service address on every node, as ``asyncio.start_server`` would, now and after
        each restart."""
        self._services.append((client_connected_cb, port, options))
        for node_id, host in self.hosts.items():
            if host.up:
                await self._serve(node_id)

    # -- routing and failures -------------------------------------------------------------------------------

    def move(self, node_id: int, client: str | None = None) -> None:
        """From now on, send ``client``'s packets (None: every client's) to node ``node_id``."""
        self.router.move(node_id, self.net.loop.time(), None if client is None else packed(client))

    def kill(self, node_id: int) -> None:
        """Node ``node_id`` dies (no goodbye to anyone) and routing withdraws it."""
        self.hosts[node_id].crash()
        self.router.down.add(node_id)

    def restart(self, node_id: int) -> None:
        """Node ``node_id`` boots again with a new incarnation and its services, and routing takes it back."""
        self.hosts[node_id].restart()
        self.router.down.discard(node_id)

    @property
    def moves(self) -> int:
        """Times a client's route moved to another node."""
        return self.router.moves
