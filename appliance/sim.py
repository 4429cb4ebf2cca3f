"""A whole anycast cluster in one process, on a virtual clock: nodes, clients, a router that moves each client's
packets between nodes, and a faulty control network between the nodes.

Clients are plain Hosts (RFC 9293 behaviour: a stranger's RST kills their connection), so a run shows exactly
what a real client would see. Everything is seeded: a seed replays a run, and a minute of traffic takes
milliseconds of CPU per megabyte. Used by the property tests, and public for anyone's own cluster tests.
"""

import random
from collections import Counter
from collections.abc import Callable

from stack.host import Host
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.events import Event
from stack.tcp.state import State
from stack.testing.link import FaultyLink, LinkFaults
from tunnel.keys import ClusterKeys

from .node import AnycastNode, ClusterConfig

App = Callable[[object, Connection, Event, float], None]  # (host or node, connection, event, now)
SERVICE_V4 = "192.0.2.10"
UNDERLAY_PORT = 6080
_RST = 0x04
_SYN = 0x02


def _client_view(packet: bytes) -> tuple[bytes, int, int, int]:
    """(client address, client port, service port, TCP flags) of a packet a node sends to a client."""
    if packet[0] >> 4 == 4:
        dst, header = packet[16:20], (packet[0] & 0x0F) * 4
    else:
        dst, header = packet[24:40], 40
    sport, dport = int.from_bytes(packet[header : header + 2]), int.from_bytes(packet[header + 2 : header + 4])
    return dst, dport, sport, packet[header + 13]


class Router:
    """Where packets towards the anycast address go, per client: each client's route stays on one node for an
    exponentially distributed dwell (mean ``mean_dwell`` seconds; None: never moves), and with probability
    ``flap`` a single packet goes to a random node instead (per-packet flapping, as under ECMP churn)."""

    def __init__(self, node_ids: list[int], seed: int | str, mean_dwell: float | None, flap: float = 0.0) -> None:
        self.node_ids = node_ids
        self.mean_dwell = mean_dwell
        self.flap = flap
        self._rng = random.Random(f"{seed}:router")
        self._route: dict[bytes, tuple[int, float]] = {}
        self.moves = 0
        self.down: set[int] = set()  # nodes the routing has withdrawn (dead nodes)
        self.preferred: int | None = None  # where new clients go first (``move`` with no client); None: at random

    def pick(self, client: bytes, now: float) -> int:
        live = [n for n in self.node_ids if n not in self.down] or self.node_ids
        node, until = self._route.get(client, (None, 0.0))
        if node is None or node in self.down or (self.mean_dwell is not None and now >= until):
            previous = node
            first = node is None and self.preferred in live
            self._set(client, self.preferred if first else self._rng.choice(live), now)
            node = self._route[client][0]
            self.moves += previous is not None and node != previous
        if self.flap and self._rng.random() < self.flap:
            return self._rng.choice(live)
        return node

    def _set(self, client: bytes, node: int, now: float) -> None:
        dwell = self._rng.expovariate(1 / self.mean_dwell) if self.mean_dwell else float("inf")
        self._route[client] = (node, now + dwell)

    def move(self, node: int, now: float, client: bytes | None = None) -> None:
        """Route ``client`` (None: every client, and new ones first) to ``node`` from now on, for a dwell."""
        if node not in self.node_ids:
            raise ValueError(f"no node {node}: the cluster has nodes {self.node_ids}")
        if client is None:
            self.preferred = node
        for each in [client] if client is not None else list(self._route):
            self.moves += self._route.get(each, (node,))[0] != node
            self._set(each, node, now)


class ClusterSim:
    def __init__(
        self,
        *,
        nodes: int,
        ranges: int,
        headroom: int,
        hwm_margin: int,
        seed: int | str = 0,
        service: str = SERVICE_V4,
        mean_dwell: float | None = 0.2,
        flap: float = 0.0,
        client_faults: LinkFaults | None = None,
        control_faults: LinkFaults | None = None,
        config: TcpConfig | None = None,
        cluster_options: dict | None = None,
    ) -> None:
        self.seed = seed
        self.now = 0.0
        self.service = service
        self._config = config
        self._client_faults = client_faults or LinkFaults()
        self._control_faults = control_faults or LinkFaults()
        self._cluster = dict(ranges=ranges, headroom=headroom, hwm_margin=hwm_margin, **(cluster_options or {}))
        self._keys = ClusterKeys(send_id=1, keys={1: random.Random(f"{seed}:key").randbytes(32)})
        self._underlay = {i: (f"10.255.0.{i}", UNDERLAY_PORT) for i in range(1, nodes + 1)}
        self._by_underlay = {addr: i for i, addr in self._underlay.items()}
        self._incarnations = Counter()
        self.nodes: dict[int, AnycastNode] = {}
        self.down: set[int] = set()
        for node_id in self._underlay:
            self.nodes[node_id] = self._make_node(node_id)
        self.router = Router(list(self.nodes), seed, mean_dwell, flap)
        self.clients: dict[bytes, Host] = {}
        self.apps: dict[object, App] = {}  # keyed by the node id or the client Host
        self.links: dict[tuple[str, object, object], FaultyLink] = {}
        # Which nodes sent a client anything but a SYN-ACK, per connection: the owner alone should.
        self.responders: dict[tuple, set[int]] = {}
        self.resets_to_clients = 0  # RSTs that reached a client while it had that connection open

    def _make_node(self, node_id: int) -> AnycastNode:
        self._incarnations[node_id] += 1
        peers = {i: addr for i, addr in self._underlay.items() if i != node_id}
        return AnycastNode(
            [self.service],
            cluster=ClusterConfig(node_id=node_id, **self._cluster),
            peers=peers,
            keys=self._keys,
            incarnation=self._incarnations[node_id],
            secret=random.Random(f"{self.seed}:secret:{node_id}").randbytes(32),
            now=self.now,
            config=self._config,
        )

    # -- building -------------------------------------------------------------------------------------------

    def add_client(self, address: str, app: App | None = None) -> Host:
        host = Host([address], secret=random.Random(f"{self.seed}:{address}").randbytes(32), config=self._config)
        (packed,) = host.addresses
        self.clients[packed] = host
        if app is not None:
            self.apps[host] = app
        return host

    def serve(self, node_app: App, port: int) -> None:
        """Listen on ``port`` of the service address on every node, with ``node_app`` handling events."""
        for node_id, node in self.nodes.items():
            node.listen(port)
            self.apps[node_id] = node_app
        self._service_port = port

    def kill(self, node_id: int) -> None:
        """The node stops dead: nothing in, nothing out; routing withdraws it."""
        self.down.add(node_id)
        self.router.down.add(node_id)

    def restart(self, node_id: int) -> None:
        """The node comes back empty, with a new incarnation, listening as before."""
        self.nodes[node_id] = node = self._make_node(node_id)
        if node_id in self.apps:
            node.listen(self._service_port)
        self.down.discard(node_id)
        self.router.down.discard(node_id)

    def _link(self, kind: str, a: object, b: object) -> FaultyLink:
        key = (kind, a, b)
        link = self.links.get(key)
        if link is None:
            faults = self._control_faults if kind == "control" else self._client_faults
            link = self.links[key] = FaultyLink(faults, seed=f"{self.seed}:{kind}:{a!r}->{b!r}")
        return link

    # -- running --------------------------------------------------------------------------------------------

    def flush(self) -> None:
        now = self.now
        for node_id, node in self.nodes.items():
            if node_id in self.down:
                continue
            self._run_app(node_id, node)
            for packet in node.packets_to_send(now):
                self._to_client(node_id, packet)
            self._run_app(node_id, node)  # claims start on the watermark events that output raised
            for address, datagram in node.datagrams_to_send(now):
                self._link("control", node_id, self._by_underlay[address]).send(datagram, now)
        for address, client in self.clients.items():
            self._run_app(client, client)
            for packet in client.packets_to_send(now):
                node_id = self.router.pick(address, now)
                self._link("to-node", address, node_id).send(packet, now)

    def _run_app(self, key: object, host) -> None:
        app = self.apps.get(key)
        while (item := host.next_event()) is not None:
            if app is not None:
                app(host, item[0], item[1], self.now)

    def _to_client(self, node_id: int, packet: bytes) -> None:
        dst = packet[16:20] if packet[0] >> 4 == 4 else packet[24:40]
        if dst not in self.clients:
            return
        dst, dport, sport, flags = _client_view(packet)
        if not flags & _SYN:
            self.responders.setdefault((dst, dport, sport), set()).add(node_id)
        self._link("to-client", node_id, dst).send(packet, self.now)

    def _deliver_to_client(self, client: Host, packet: bytes, now: float) -> None:
        dst, dport, sport, flags = _client_view(packet)
        if flags & _RST:
            (service,) = self.nodes[next(iter(self.nodes))].addresses
            conn = client.connections.get((dst, dport, service, sport))
            if conn is not None and conn.state not in (State.CLOSED, State.TIME_WAIT):
                self.resets_to_clients += 1
        client.receive_packet(packet, now)

    def next_deadline(self) -> float | None:
        candidates = [link.next_delivery() for link in self.links.values()]
        candidates += [n.get_timer() for i, n in self.nodes.items() if i not in self.down]
        candidates += [c.get_timer() for c in self.clients.values()]
        candidates = [t for t in candidates if t is not None]
        return min(candidates) if candidates else None

    def step(self) -> bool:
        self.flush()
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.now = now = max(self.now, deadline)
        for (kind, _, dst), link in self.links.items():
            packets = link.deliver(now)
            if not packets:
                continue
            if kind == "to-client":
                for packet in packets:
                    self._deliver_to_client(self.clients[dst], packet, now)
            elif dst not in self.down:
                node = self.nodes[dst]
                receive = node.receive_datagram if kind == "control" else node.receive_packet
                for packet in packets:
                    receive(packet, now)
        for node_id, node in self.nodes.items():
            t = node.get_timer()
            if node_id not in self.down and t is not None and t <= now:
                node.handle_timer(now)
        for client in self.clients.values():
            t = client.get_timer()
            if t is not None and t <= now:
                client.handle_timer(now)
        self.flush()
        return True

    def run(self, until: Callable[[], bool] | None = None, *, max_time: float = 600.0) -> None:
        self.flush()
        while self.now < max_time:
            if until is not None and until():
                return
            if not self.step():
                return
