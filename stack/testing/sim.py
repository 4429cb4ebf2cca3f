"""A network of sans-I/O hosts on a virtual clock.

Each step jumps the clock to the earliest deadline (a packet arriving or a host timer), delivers and fires
everything due then, hands each host's events to its application callback, and sends what the hosts produce.
Nothing reads the wall clock, so a seed replays a run exactly and a minute of traffic takes milliseconds.
"""

from collections.abc import Callable

from ..host import Host
from ..tcp.connection import Connection
from ..tcp.events import Event
from ..wire.tso import TsoPacket, segment
from .link import FaultyLink, LinkFaults

App = Callable[[Host, Connection, Event], None]


def destination_address(packet: bytes) -> bytes:
    """The packed destination address straight from the IP header (the hosts built it; receivers parse it
    fully), or b"" for what is not IPv4 or IPv6."""
    version = packet[0] >> 4 if packet else 0
    return packet[16:20] if version == 4 else packet[24:40] if version == 6 else b""


class Network:
    def __init__(self, seed: int | str = 0) -> None:
        self.seed = seed
        self.now = 0.0
        self.hosts: dict[str, Host] = {}
        self.apps: dict[str, App] = {}
        self._by_address: dict[bytes, str] = {}
        self.links: dict[tuple[str, str], FaultyLink] = {}
        self.unroutable = 0
        self.super_segments = 0  # TsoPackets the hosts sent, cut into pieces on the way

    def add_host(self, name: str, host: Host, app: App | None = None) -> Host:
        if name in self.hosts:
            raise ValueError(f"a host named {name!r} is already on this network")
        self.hosts[name] = host
        if app is not None:
            self.apps[name] = app
        for addr in host.addresses:
            self._by_address[addr] = name
        return host

    def connect(self, a: str, b: str, faults: LinkFaults | None = None, back: LinkFaults | None = None) -> None:
        """Join hosts ``a`` and ``b`` with a link each way (``back`` for b->a, default the same faults)."""
        faults = faults or LinkFaults()
        self.links[(a, b)] = FaultyLink(faults, seed=f"{self.seed}:{a}->{b}")
        self.links[(b, a)] = FaultyLink(back or faults, seed=f"{self.seed}:{b}->{a}")

    def flush(self) -> None:
        """Run every host's applications on pending events and put the hosts' output on the links."""
        for name, host in self.hosts.items():
            app = self.apps.get(name)
            if app is not None:
                while (item := host.next_event()) is not None:
                    app(host, *item)
            for packet in host.packets_to_send(self.now):
                self._route(name, packet)

    def _route(self, src: str, packet: bytes) -> None:
        if type(packet) is TsoPacket:
            self.super_segments += 1
            for piece in segment(packet):  # what a device with segmentation offload puts on the wire
                self._route(src, piece)
            return
        dst = self._by_address.get(destination_address(packet))
        link = self.links.get((src, dst)) if dst is not None else None
        if link is None:
            self.unroutable += 1
            return
        link.send(packet, self.now)

    def next_deadline(self) -> float | None:
        deadline = None
        for link in self.links.values():
            t = link.next_delivery()
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        for host in self.hosts.values():
            t = host.get_timer()
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        return deadline

    def step(self) -> bool:
        """Advance to the next deadline and process it; False when nothing is left to happen."""
        self.flush()
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.now = max(self.now, deadline)
        for (_, dst), link in self.links.items():
            host = self.hosts[dst]
            for packet in link.deliver(self.now):
                host.receive_packet(packet, self.now)
        for host in self.hosts.values():
            t = host.get_timer()
            if t is not None and t <= self.now:
                host.handle_timer(self.now)
        self.flush()
        return True

    def run(self, until: Callable[[], bool] | None = None, *, max_time: float = 3600.0, max_steps: int = 10**8) -> int:
        """Step until ``until()`` holds, nothing is left, simulated ``max_time`` passes or ``max_steps`` run out;
        return the number of steps."""
        steps = 0
        self.flush()
        while steps < max_steps and self.now < max_time:
            if until is not None and until():
                break
            if not self.step():
                break
            steps += 1
        return steps
