"""A whole appliance node on the running event loop: its TUN device, the anycast node (or a plain stack when the
config has no cluster), the configured services, the metrics endpoint and the local control socket.

``anycast-tcp run`` is this class plus signal handling; an asyncio application embeds the same node with
``node = await Node.start("node.toml")`` and serves on it through the stack's own API.
"""

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from stack.aio.stack import Stack
from stack.tcp.state import State
from tunnel.pcap import PcapWriter

from . import services
from .aio import AnycastStack
from .config import ConfigError, NodeConfig, ServiceConfig, load
from .metrics import start_metrics_server
from .snapshot import snapshot
from .status import remove_socket, start_status_server

log = structlog.get_logger()
CLAIM_RELEASE_TIMEOUT = 2.0  # at shutdown: how long peers get to acknowledge our releases
DRAIN_POLL = 0.05
FINISHED = (State.TIME_WAIT, State.CLOSED)


def resolve_handlers(config: NodeConfig) -> list[Callable]:
    """Each service's connection handler; a python handler that cannot be imported is a ConfigError."""
    handlers = []
    for i, service in enumerate(config.services):
        try:
            handlers.append(_handler(service))
        except ValueError as exc:
            raise ConfigError(f"services[{i}].handler", str(exc), "") from None
    return handlers


def check(config: NodeConfig) -> None:
    """What ``check-config`` does and every ``run`` starts with, beyond parsing: keys readable, handlers importable."""
    if config.cluster is not None:
        config.load_keys()
    resolve_handlers(config)


def _handler(service: ServiceConfig) -> Callable:
    if service.kind == "echo":
        return services.echo
    if service.kind == "discard":
        return services.discard
    if service.kind == "proxy":
        return services.Proxy(service.backend, proxy_protocol=service.proxy_protocol)
    return services.load_handler(service.handler)


class Node:
    """Start with ``await Node.start(config)``; stop with ``await node.stop()`` (or ``async with``)."""

    def __init__(self, config: NodeConfig, stack: Stack, capture: PcapWriter | None) -> None:
        self.config = config
        self.stack = stack
        self.started_at = time.time()
        self._capture = capture
        self._servers: list = []  # the services' listeners on the stack
        self._aux: list[asyncio.AbstractServer] = []  # metrics and control socket, on kernel sockets
        self._stopped = False

    @classmethod
    async def start(cls, config: "NodeConfig | str | os.PathLike", *, capture: str | None = None, netns=None) -> "Node":
        """Bring the node up as ``config`` (a NodeConfig or the path of a node.toml) says. ``capture`` names a pcap
        file for everything the node reads and writes, the tunnel's datagrams included."""
        if not isinstance(config, NodeConfig):
            config = load(config)
        handlers = resolve_handlers(config)  # before any side effect: a typo must not leave a TUN behind
        keys = config.load_keys() if config.cluster is not None else None
        writer = PcapWriter(capture) if capture else None
        try:
            if config.cluster is not None:
                stack = await AnycastStack.open(
                    tun=config.tun_name,
                    addresses=config.addresses,
                    listen=config.cluster.listen,
                    cluster=config.cluster_config(),
                    peers=config.peer_map(),
                    keys=keys,
                    mtu=config.mtu,
                    netns=netns,
                    capture=writer,
                )
            else:
                stack = await Stack.open_tun(config.tun_name, config.addresses, config.mtu, netns=netns, capture=writer)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        stack.host.max_connections = config.max_connections
        node = cls(config, stack, writer)
        try:
            for service, handler in zip(config.services, handlers, strict=True):
                host, port = service.listen
                server = await stack.start_server(
                    handler, host, port, backlog=1024, max_connections=service.max_connections
                )
                node._servers.append(server)
            if config.metrics_listen is not None:
                node._aux.append(await start_metrics_server(*config.metrics_listen, node.status))
            if config.control_socket:
                node._aux.append(await start_status_server(config.control_socket, node.status))
        except BaseException:
            await node.stop(grace=0)
            raise
        log.info(
            "node.serving",
            node=config.node_id,
            tun=config.tun_name,
            addresses=list(config.addresses),
            services=[s.describe() for s in config.services],
            anycast=config.cluster is not None,
            peers=sorted(config.peer_map()),
            metrics=_text(config.metrics_listen),
            control_socket=config.control_socket or None,
        )
        return node

    # -- the stack's API, so an application can serve on the node -------------------------------------------

    async def start_server(self, *args, **kwargs):
        return await self.stack.start_server(*args, **kwargs)

    async def create_server(self, *args, **kwargs):
        return await self.stack.create_server(*args, **kwargs)

    async def open_connection(self, *args, **kwargs):
        return await self.stack.open_connection(*args, **kwargs)

    async def create_connection(self, *args, **kwargs):
        return await self.stack.create_connection(*args, **kwargs)

    # -- operating ------------------------------------------------------------------------------------------

    @property
    def anycast(self) -> AnycastStack | None:
        return self.stack if isinstance(self.stack, AnycastStack) else None

    def status(self) -> dict:
        services = [{"kind": s.kind, "listen": _text(s.listen), "describe": s.describe()} for s in self.config.services]
        state = snapshot(self.stack, started_at=self.started_at, now=time.time(), services=services)
        state["node"] = self.config.node_id  # a plain node has an id too, though its stack does not know it
        return state

    def reload(self) -> None:
        """Re-read the config file and take its peer list and keys (SIGHUP). Anything else that changed needs a
        restart, and is reported. A bad file changes nothing and raises ConfigError."""
        new = load(self.config.source)
        old = self.config
        if (new.cluster is None) != (old.cluster is None):
            raise ConfigError("cluster", "added or removed since the node started", "restart the node to change that")
        if new.cluster is not None:
            self.anycast.reconfigure(new.peer_map(), new.load_keys())
            reloadable = dict(peers=new.cluster.peers, key_file=new.cluster.key_file)
            self.config = replace(old, cluster=replace(old.cluster, **reloadable))
        # Equal unless something beyond the peers and keys changed: that waits for a restart.
        log.info("node.reloaded", peers=sorted(new.peer_map()), restart_needed=new != self.config)

    def open_connections(self) -> int:
        return sum(1 for c in self.stack.host.connections.values() if c.state not in FINISHED)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give open connections ``grace`` seconds (the config's by default) to finish, reset the
        rest, release our claims and wait briefly for the peers to acknowledge, then take everything down."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.grace if grace is None else grace
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.open_connections() and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        left = self.open_connections()
        for transport in list(self.stack.runtime.transports.values()):
            transport.abort()
        self.stack.runtime.flush()
        unacknowledged = await self.anycast.release_claims(CLAIM_RELEASE_TIMEOUT) if self.anycast else []
        for server in self._aux:
            server.close()
        await self.stack.close()
        if self.config.control_socket:
            remove_socket(self.config.control_socket)
        if self._capture is not None:
            self._capture.close()
        log.info(
            "node.stopped", node=self.config.node_id, reset_at_stop=left, releases_unacknowledged_by=unacknowledged
        )

    async def __aenter__(self) -> "Node":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def _text(endpoint: tuple[str, int] | None) -> str | None:
    return None if endpoint is None else f"{endpoint[0]}:{endpoint[1]}"
