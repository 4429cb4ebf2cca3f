"""A simulated IP network for asyncio applications: hosts running our TCP stack, joined by seeded faulty links,
all on the virtual clock of ``stack.testing.loop``.

    async def main():
        net = SimNetwork(seed=7)
        server, client = net.add_host("server", "10.0.0.1"), net.add_host("client", "10.0.0.2")
        await server.start_server(handle, "10.0.0.1", 8080)          # as asyncio.start_server
        reader, writer = await client.open_connection("10.0.0.1", 8080)
        net.set_link("client", "server", loss=0.05)                  # change conditions while it runs
        net.partition("client", "server"); await asyncio.sleep(3); net.heal()

    stack.testing.run(main())

Every pair of hosts has a link each way (``LinkFaults``: delay, jitter, bandwidth, loss, duplication, reordering,
corruption), made with the network's default faults when first used and seeded from the network's seed and the
two names, so a seed replays a run packet for packet. A packet goes to the host holding its destination address,
or where ``route`` sends that address (the anycast cluster's router). Hosts crash and restart; any link can be
recorded to a pcap file with virtual timestamps.
"""

import asyncio
import dataclasses
import ipaddress
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from tunnel.capture import UDP, udp_packet
from tunnel.device import READ_BATCH, DeviceStats
from tunnel.pcap import PcapWriter

from ..addresses import packed
from ..aio.stack import Stack
from ..tcp.config import TcpConfig
from ..wire.checksum import internet_checksum, pseudo_header_sum
from ..wire.tso import TsoPacket, segment
from .link import FaultyLink, LinkFaults
from .loop import VirtualTimeLoop
from .sim import destination_address

Route = Callable[[str, bytes], str | None]  # (sending host's name, packet) -> receiving host's name, or None
Main = Callable[["SimHost"], Awaitable[object]]

DEFAULT_LINK = LinkFaults(delay=0.001, bandwidth=12.5e6)  # a LAN: 1 ms each way, 100 Mbit/s
DATAGRAM = "udp"  # link kind for datagrams between hosts (the anycast nodes' tunnel); IP packets have kind ""


class SimDevice:
    """The packet device under one simulated host: what the stack writes goes to the network, what the network
    delivers waits here until the runtime reads it (a device without a file descriptor, ``CallbackDevice``)."""

    def __init__(self, network: "SimNetwork", name: str, mtu: int, tso_limit: int) -> None:
        self.network = network
        self.name = name
        self.mtu = mtu
        self.tso_limit = tso_limit
        self.stats = DeviceStats()
        self.on_readable: Callable[[], None] | None = None
        self.up = True
        self._inbox: deque[bytes] = deque()

    def fileno(self) -> None:
        return None

    def read_batch(self, limit: int = READ_BATCH) -> list[bytes]:
        inbox = self._inbox
        out = [inbox.popleft() for _ in range(min(limit, len(inbox)))]
        if out:
            self.stats.packets_in += len(out)
            self.stats.read_batches += 1
        return out

    def write(self, packet: bytes) -> bool:
        if not self.up:
            self.stats.write_drops += 1
            return False
        self.stats.packets_out += 1
        self.stats.bytes_out += len(packet)
        self.network._transmit(self.name, packet)
        return True

    def write_batch(self, packets: Iterable[bytes]) -> int:
        return sum(self.write(p) for p in packets)

    def deliver(self, packet: bytes) -> None:
        if not self.up:
            return
        self._inbox.append(packet)
        self.stats.bytes_in += len(packet)
        if len(self._inbox) == 1 and self.on_readable is not None:
            self.on_readable()

    def close(self) -> None:
        self.up = False
        self._inbox.clear()


class SimHost:
    """One host: the library API of ``stack.aio.Stack`` (``start_server``, ``open_connection``, ``create_server``,
    ``create_connection``) on a simulated device, and the tasks that run on it (``main``, ``spawn``), which a
    crash cancels."""

    def __init__(self, network: "SimNetwork", name: str, addresses: list[str], main: Main | None, **options) -> None:
        self.network = network
        self.name = name
        self.addresses = addresses
        self.main = main
        self.options = options
        self.incarnation = 0
        self.stack: Stack | None = None
        self.device: SimDevice | None = None
        self.tasks: set[asyncio.Task] = set()
        self._closing: asyncio.Future | None = None
        self.on_datagram: Callable[[bytes, tuple], None] | None = None  # set by what runs a tunnel on this host

    @property
    def up(self) -> bool:
        return self.stack is not None

    def _boot(self) -> None:
        self.incarnation += 1
        options = self.options
        self.device = SimDevice(self.network, self.name, options["mtu"], options["tso_limit"])
        # Each incarnation its own secret (ISNs, ephemeral ports), drawn from the seed: a restart is a new host.
        secret = random.Random(f"{self.network.seed}:{self.name}:{self.incarnation}").randbytes(32)
        factory = options["stack_factory"] or Stack
        self.stack = factory(self.device, self.addresses, config=options["config"], secret=secret)
        if self.main is not None:
            self.spawn(self.main(self))

    def spawn(self, coro: Awaitable[object], *, name: str | None = None) -> asyncio.Task:
        """Run ``coro`` as a task of this host: a crash cancels it. Its exception, if any, is the network's
        (``SimNetwork.errors``), so a failing server does not fail silently."""
        task = asyncio.ensure_future(coro)
        if name is not None:
            task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.network.errors.append((self.name, task.exception()))

    def _running(self) -> Stack:
        if self.stack is None:
            raise RuntimeError(f"host {self.name!r} is down: restart() it first")
        return self.stack

    async def start_server(self, client_connected_cb, host: str | None = None, port: int | None = None, **kw):
        return await self._running().start_server(client_connected_cb, host, port, **kw)

    async def create_server(self, protocol_factory, host: str | None = None, port: int | None = None, **kw):
        return await self._running().create_server(protocol_factory, host, port, **kw)

    async def open_connection(self, host: str, port: int, **kw):
        return await self._running().open_connection(host, port, **kw)

    async def create_connection(self, protocol_factory, host: str, port: int, **kw):
        return await self._running().create_connection(protocol_factory, host, port, **kw)

    def send_datagram(self, data: bytes, source: tuple, destination: tuple) -> bool:
        """Send a datagram from ``source`` (an address of this host, port) to ``destination``; False if dropped
        at once (this host is down, or nobody holds the destination address)."""
        if self.stack is None:
            return False
        return self.network._transmit_datagram(self.name, data, source, destination)

    def crash(self) -> None:
        """Power off: no goodbye is sent (no RST, no FIN), packets that arrive while it is down are lost, its
        tasks are cancelled and its connections vanish."""
        if self.stack is None:
            return
        self.device.up = False  # whatever closing the stack writes goes nowhere
        for task in list(self.tasks):
            task.cancel()
        stack, self.stack = self.stack, None
        # Releases the runtime's timers and tells local readers their connections are gone; its RSTs go nowhere.
        self._closing = asyncio.ensure_future(stack.close())

    def restart(self) -> None:
        """Boot again after a crash: a fresh stack (new secret, nothing of the old connections) and ``main``."""
        if self.stack is not None:
            raise RuntimeError(f"host {self.name!r} is running: crash() it before restarting")
        self._boot()

    def __repr__(self) -> str:
        return f"SimHost({self.name!r}, {self.addresses}, {'up' if self.up else 'down'})"


@dataclasses.dataclass(slots=True)
class _Link:
    faults: FaultyLink
    capture: PcapWriter | None = None
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None


class SimNetwork:
    """Hosts and the links between them, on the running ``VirtualTimeLoop`` (``stack.testing.run``)."""

    def __init__(self, seed: int | str = 0, *, link: LinkFaults = DEFAULT_LINK, mtu: int = 1500) -> None:
        self.seed = seed
        self.default_link = link
        self.mtu = mtu
        self.hosts: dict[str, SimHost] = {}
        self.errors: list[tuple[str, BaseException]] = []  # exceptions of hosts' tasks, in the order they ended
        self.unroutable = 0  # packets for an address no host holds
        self.partitioned = 0  # packets a partition stopped
        self.super_segments = 0  # TSO super-segments cut into packets on the way
        self.bad_datagrams = 0  # datagrams a corrupting link damaged: dropped on their UDP checksum
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owners: dict[bytes, str] = {}
        self._routes: dict[bytes, Route] = {}
        self._faults: dict[tuple[str, str], LinkFaults] = {}
        self._links: dict[tuple[str, str, str], _Link] = {}
        self._cut: set[frozenset[str]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.get_running_loop()
            if not isinstance(loop, VirtualTimeLoop):
                raise RuntimeError(
                    "SimNetwork runs on virtual time: start it under stack.testing.run(main()) "
                    "(or a stack.testing.VirtualTimeLoop), not on a real-time event loop"
                )
            self._loop = loop
        return self._loop

    # -- building -------------------------------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        *addresses: str,
        main: Main | None = None,
        config: TcpConfig | None = None,
        mtu: int | None = None,
        tso: bool = False,
        datagram_addresses: Iterable[str] = (),
        stack_factory: Callable[..., Stack] | None = None,
    ) -> SimHost:
        """A host named ``name`` answering for ``addresses`` (``"10.0.0.1"``, ``"fd00::1"``), running ``main(host)``
        as its first task if given (again after each restart). ``tso``: the host sends 64 KB super-segments, which
        the network cuts to ``mtu`` packets like a NIC would. ``datagram_addresses`` receive datagrams only (an
        anycast node's tunnel endpoint). An address several hosts share needs a ``route`` first. Must be called
        with the loop running."""
        if name in self.hosts:
            raise ValueError(f"a host named {name!r} is already on this network: pick another name")
        if not addresses:
            raise ValueError(f"host {name!r} needs at least one address, like add_host({name!r}, '10.0.0.1')")
        keys = []
        for address in [*addresses, *datagram_addresses]:
            key = packed(address.split("/")[0])
            if key in self._routes:
                continue  # shared, and routed per packet
            if key in self._owners:
                raise ValueError(
                    f"address {address} already belongs to host {self._owners[key]!r}: "
                    "give each host its own, or route() a shared one before adding its hosts"
                )
            keys.append(key)
        _ = self.loop
        host = SimHost(
            self,
            name,
            [a if "/" in a else f"{a}/{32 if len(packed(a)) == 4 else 128}" for a in addresses],
            main,
            config=config,
            mtu=mtu or self.mtu,
            tso_limit=65455 if tso else 0,
            stack_factory=stack_factory,
        )
        for key in keys:
            self._owners[key] = name
        self.hosts[name] = host
        host._boot()
        return host

    def host(self, name: str) -> SimHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host named {name!r} on this network; it has {sorted(self.hosts)}") from None

    def route(self, address: str, route: Route | None) -> None:
        """Send packets for ``address`` where ``route(sender, packet)`` says (a host's name) instead of to the host
        that holds it; None restores the default. This is how an anycast address is spread over several hosts."""
        key = packed(address)
        if route is None:
            self._routes.pop(key, None)
        else:
            self._routes[key] = route
            self._owners.pop(key, None)

    # -- conditions -----------------------------------------------------------------------------------------

    def link_faults(self, a: str, b: str) -> LinkFaults:
        """The faults of the link from ``a`` to ``b``."""
        return self._faults.get((a, b), self.default_link)

    def set_link(self, a: str, b: str, faults: LinkFaults | None = None, *, both_ways: bool = True, **changes):
        """Change the link from ``a`` to ``b`` (and back, unless ``both_ways=False``): to ``faults``, or the current
        faults with ``changes`` (``set_link("a", "b", loss=0.1, delay=0.05)``). Takes effect for the next packet;
        packets in flight keep their fate."""
        for src, dst in ((a, b), (b, a)) if both_ways else ((a, b),):
            self.host(src), self.host(dst)
            new = faults if faults is not None else self.link_faults(src, dst)
            if changes:
                new = dataclasses.replace(new, **changes)
            self._faults[(src, dst)] = new
            for kind in ("", DATAGRAM):
                link = self._links.get((src, dst, kind))
                if link is not None:
                    link.faults.set_faults(new)

    def partition(self, *groups: str | Iterable[str]) -> None:
        """Cut every link between different groups: ``partition("a", "b")`` parts two hosts, ``partition(["a",
        "b"], ["c"])`` two sides. Packets on the way across are lost too. Partitions add up until ``heal``."""
        sides = [[g] if isinstance(g, str) else list(g) for g in groups]
        if len(sides) < 2:
            raise ValueError("partition() needs at least two hosts or groups to separate")
        for i, side in enumerate(sides):
            for other in sides[i + 1 :]:
                for a in side:
                    for b in other:
                        self.host(a), self.host(b)
                        self._cut.add(frozenset((a, b)))

    def heal(self, *hosts: str) -> None:
        """End every partition (no arguments), or those involving ``hosts``."""
        if not hosts:
            self._cut.clear()
        else:
            self._cut = {pair for pair in self._cut if not pair & set(hosts)}

    def partitioned_from(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._cut

    def capture(self, a: str, b: str, path: str, *, both_ways: bool = True) -> PcapWriter:
        """Record what the link from ``a`` to ``b`` (and back) delivers, at its virtual arrival times, in a pcap
        file (raw IP; datagrams as the UDP packets they would be). Close the writer, or the network, to finish."""
        writer = PcapWriter(path)
        for src, dst in ((a, b), (b, a)) if both_ways else ((a, b),):
            self.host(src), self.host(dst)
            for kind in ("", DATAGRAM):
                self._link(src, dst, kind).capture = writer
        return writer

    def close(self) -> None:
        """Flush and close every capture."""
        for link in self._links.values():
            if link.capture is not None:
                link.capture.close()

    # -- moving packets -------------------------------------------------------------------------------------

    def _link(self, src: str, dst: str, kind: str) -> _Link:
        link = self._links.get((src, dst, kind))
        if link is None:
            faults = FaultyLink(self.link_faults(src, dst), seed=f"{self.seed}:{src}->{dst}:{kind}")
            link = self._links[(src, dst, kind)] = _Link(faults)
        return link

    def _destination(self, src: str, packet: bytes) -> str | None:
        address = destination_address(packet)
        route = self._routes.get(address)
        return route(src, packet) if route is not None else self._owners.get(address)

    def _transmit(self, src: str, packet: bytes) -> None:
        if type(packet) is TsoPacket:
            self.super_segments += 1
            for piece in segment(packet):  # what a NIC with segmentation offload puts on the wire
                self._transmit(src, piece)
            return
        dst = self._destination(src, packet)
        if dst is None:
            self.unroutable += 1
            return
        self._send(src, dst, "", packet)

    def _transmit_datagram(self, src: str, data: bytes, source: tuple, destination: tuple) -> bool:
        dst = self._owners.get(packed(destination[0]))
        if dst is None:
            self.unroutable += 1
            return False
        # As the UDP packet it would be on the wire: a flipped bit fails its checksum, as in a real receiver.
        self._send(src, dst, DATAGRAM, udp_packet(source[:2], destination[:2], data))
        return True

    def _send(self, src: str, dst: str, kind: str, packet: bytes) -> None:
        if frozenset((src, dst)) in self._cut:
            self.partitioned += 1
            return
        link = self._link(src, dst, kind)
        link.faults.send(packet, self.loop.time())
        self._arm(link, (src, dst, kind))

    def _arm(self, link: _Link, key: tuple[str, str, str]) -> None:
        due = link.faults.next_delivery()
        if due is None or (link.timer_at is not None and link.timer_at <= due):
            return
        if link.timer is not None:
            link.timer.cancel()
        link.timer, link.timer_at = self.loop.call_at(due, self._deliver, key), due

    def _deliver(self, key: tuple[str, str, str]) -> None:
        src, dst, kind = key
        link = self._links[key]
        link.timer = link.timer_at = None
        now = self.loop.time()
        packets = link.faults.deliver(now)
        host = self.hosts[dst]
        cut = frozenset((src, dst)) in self._cut
        for packet in packets:
            if cut:
                self.partitioned += 1
                continue
            if link.capture is not None:
                link.capture.write(packet, now)
            if not kind:
                if host.device is not None:
                    host.device.deliver(packet)
                continue
            opened = open_udp(packet)
            if opened is None:
                self.bad_datagrams += 1
            elif host.on_datagram is not None and host.stack is not None:
                host.on_datagram(opened[1], opened[0])
        self._arm(link, key)


def open_udp(packet: bytes) -> tuple[tuple[str, int], bytes] | None:
    """(source, payload) of a UDP packet built by ``udp_packet``, or None if its checksum fails."""
    if packet[0] >> 4 == 4:
        header, src = 20, packet[12:16]
        pseudo = pseudo_header_sum(src, packet[16:20], UDP, len(packet) - header)
    else:
        header, src = 40, packet[8:24]
        pseudo = pseudo_header_sum(src, packet[24:40], UDP, len(packet) - header)
    if internet_checksum(packet[header:], pseudo) != 0:
        return None
    port = int.from_bytes(packet[header : header + 2])
    return (str(ipaddress.ip_address(src)), port), packet[header + 8 :]
