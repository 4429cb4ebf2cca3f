"""The library API: our TCP stack as a host on a device, used the way asyncio itself is used.

stack = await Stack.open_tun("atcp0", addresses=["10.1.0.2/24"], mtu=1500)
server = await stack.start_server(client_connected_cb, "10.1.0.2", 8080)   # like asyncio.start_server
reader, writer = await stack.open_connection("10.1.0.1", 9000)             # like asyncio.open_connection
server = await stack.create_server(protocol_factory, "10.1.0.2", 80)      # like loop.create_server
transport, protocol = await stack.create_connection(protocol_factory, "10.1.0.1", 80)
await stack.close()                                                        # also: async with
"""

import asyncio
import errno
import ipaddress
import os
import time
from collections.abc import Callable, Iterable

import structlog

from ..addresses import packed
from ..host import Host
from ..tcp.config import TcpConfig
from ..tcp.connection import Connection
from ..tcp.errors import LocalProtocolError
from .runtime import Runtime
from .server import Server
from .transport import TcpTransport

_log = structlog.get_logger("stack.aio")

DEFAULT_LIMIT = 2**16  # asyncio's stream buffer limit


def kernel_side(addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """For a TUN device: the kernel's own address on each of our subnets (the first host address that is not
    ours), and, for single-address prefixes (/32, /128), a route into the device instead."""
    kernel, routes = [], []
    for item in addresses:
        iface = ipaddress.ip_interface(item)
        network = iface.network
        if network.num_addresses <= 2:
            routes.append(str(network))
            continue
        peer = next(h for h in network.hosts() if h != iface.ip)
        kernel.append(f"{peer}/{network.prefixlen}")
    return kernel, routes


class Stack:
    """One user-space TCP/IP host on one device, driven by the running event loop."""

    def __init__(
        self,
        device,
        addresses: Iterable[str],
        *,
        config: TcpConfig | None = None,
        secret: bytes | None = None,
        ttl: int = 64,
    ) -> None:
        try:
            ifaces = [ipaddress.ip_interface(a) for a in addresses]
        except ValueError as exc:
            raise ValueError(f"{exc}: give addresses like '10.1.0.2/24' or 'fd00:1::2/64'") from None
        self.loop = asyncio.get_running_loop()
        self.device = device
        self.addresses = ifaces
        engine = self._make_engine([str(i.ip) for i in ifaces], secret or os.urandom(32), device.mtu, config, ttl)
        self.host: Host = engine.host if hasattr(engine, "host") else engine
        # A TUN with segmentation offload takes super-segments (tunnel/vnet.py, stack/wire/tso.py).
        self.host.tso_limit = getattr(device, "tso_limit", 0)
        self.runtime = Runtime(engine, device, self.loop)
        self.runtime.accept = self._accept
        self._servers: dict[tuple[bytes | None, int], Server] = {}
        self._closed = False

    def _make_engine(self, addresses: list[str], secret: bytes, mtu: int, config: TcpConfig | None, ttl: int):
        """What the runtime drives: a plain Host here; the anycast node's stack drives its node instead."""
        return Host(addresses, secret=secret, mtu=mtu, config=config, ttl=ttl)

    @classmethod
    async def open_tun(
        cls,
        name: str,
        addresses: Iterable[str],
        mtu: int = 1500,
        *,
        netns=None,
        config: TcpConfig | None = None,
        secret: bytes | None = None,
        faults=None,
        seed: int | str = 0,
        capture=None,
        offload: bool = True,
    ) -> "Stack":
        """Create the TUN device ``name`` and answer for ``addresses`` through it. The kernel side of the device
        takes the first other address of each subnet (10.1.0.1 for 10.1.0.2/24), so the kernel's sockets reach
        the stack through it; a /32 or /128 is routed into the device instead. ``netns`` puts the device in a
        network namespace (``tunnel.netns.NetNamespace``); ``faults`` (``tunnel.faults.Faults``) injects seeded
        loss, duplication, reordering and corruption both ways, for tests; ``capture`` (``tunnel.pcap.PcapWriter``)
        records every packet read and written. ``offload`` asks the kernel for checksum and TSO offloads
        (tunnel/vnet.py): 64 KB super-segments then cross the device both ways, and a kernel that refuses gets a
        plain device; injected faults turn it off, since the kernel would vouch for a corrupted super-segment."""
        from tunnel.faults import FaultyDevice
        from tunnel.pcap import TeeDevice
        from tunnel.tun import TunDevice  # the device layer; the sans-I/O core never imports it

        addresses = list(addresses)
        kernel, routes = kernel_side(addresses)
        loop = asyncio.get_running_loop()
        device = await loop.run_in_executor(
            None,
            lambda: TunDevice.open(
                name, addresses=kernel, mtu=mtu, routes=routes, netns=netns, offload=offload and faults is None
            ),
        )
        _log.info("tun.opened", name=name, offloads=device.offloads)
        if faults is not None:
            device = FaultyDevice(device, faults, seed, clock=loop.time)
        if capture is not None:
            device = TeeDevice(device, capture, clock=time.time)
        try:
            return cls(device, addresses, config=config, secret=secret)
        except BaseException:
            device.close()
            raise

    # -- servers --------------------------------------------------------------------------------------------

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        backlog: int = 128,
        config: TcpConfig | None = None,
        start_serving: bool = True,
        max_connections: int | None = None,
    ) -> Server:
        """As ``loop.create_server``; ``max_connections`` bounds the connections open at once from this server
        (a SYN beyond it is dropped and counted, ``host.drops["listener_connection_limit"]``)."""
        if port is None:
            raise ValueError("create_server() needs a port to listen on")
        local = None if host in (None, "", "0.0.0.0", "::") else packed(host)
        try:
            listener = self.host.listen(port, local, backlog=backlog, config=config, max_connections=max_connections)
        except LocalProtocolError as exc:
            code = errno.EADDRINUSE if "already listening" in str(exc) else errno.EADDRNOTAVAIL
            raise OSError(code, str(exc)) from None
        server = Server(self, listener, protocol_factory)
        if start_serving:
            await server.start_serving()
        return server

    async def start_server(
        self,
        client_connected_cb,
        host: str | None = None,
        port: int | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        backlog: int = 128,
        config: TcpConfig | None = None,
        start_serving: bool = True,
        max_connections: int | None = None,
    ) -> Server:
        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=limit)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb)

        return await self.create_server(
            factory,
            host,
            port,
            backlog=backlog,
            config=config,
            start_serving=start_serving,
            max_connections=max_connections,
        )

    def _serve(self, server: Server) -> None:
        self._servers[(server.listener.addr, server.listener.port)] = server

    def _unserve(self, server: Server) -> None:
        self.host.unlisten(server.listener)
        self._servers.pop((server.listener.addr, server.listener.port), None)

    def _accept(self, conn: Connection) -> TcpTransport | None:
        server = self._servers.get((conn.local_addr, conn.local_port)) or self._servers.get((None, conn.local_port))
        if server is None or not server.is_serving():
            conn.abort(self.runtime.now())  # its listener is gone: like a closed listening socket, reset
            self.runtime.schedule_flush()
            return None
        protocol = server.protocol_factory()
        transport = TcpTransport(self.runtime, conn, protocol)
        self.runtime.transports[conn] = transport
        protocol.connection_made(transport)
        return transport

    # -- clients --------------------------------------------------------------------------------------------

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        *,
        local_addr: tuple[str, int] | None = None,
        config: TcpConfig | None = None,
    ) -> tuple[TcpTransport, asyncio.BaseProtocol]:
        local, local_port = local_addr if local_addr is not None else (None, None)
        try:
            conn = self.host.connect(
                host, port, self.runtime.now(), local_addr=local or None, local_port=local_port, config=config
            )
        except LocalProtocolError as exc:
            raise OSError(errno.EADDRNOTAVAIL, str(exc)) from None
        protocol = protocol_factory()
        waiter = self.loop.create_future()
        transport = TcpTransport(self.runtime, conn, protocol, waiter=waiter)
        self.runtime.transports[conn] = transport
        self.runtime.schedule_flush()
        try:
            await waiter
        except asyncio.CancelledError:
            transport.abort()
            raise
        return transport, protocol

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        limit: int = DEFAULT_LIMIT,
        local_addr: tuple[str, int] | None = None,
        config: TcpConfig | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader = asyncio.StreamReader(limit=limit)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await self.create_connection(lambda: protocol, host, port, local_addr=local_addr, config=config)
        return reader, asyncio.StreamWriter(transport, protocol, reader, self.loop)

    # -- lifetime -------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop serving, reset the connections still open, and close the device."""
        if self._closed:
            return
        self._closed = True
        for server in list(self._servers.values()):
            server.close()
        for transport in list(self.runtime.transports.values()):
            transport.abort()
        self.runtime.flush()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        self.runtime.close()
        self.device.close()

    async def __aenter__(self) -> "Stack":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
