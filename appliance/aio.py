"""The anycast node on the event loop: a Stack (the library API: start_server, open_connection, create_server,
create_connection) whose runtime drives an ``AnycastNode`` on a TUN device, plus the UDP socket to its peers."""

import asyncio
import time
from collections.abc import Iterable, Mapping

import structlog

from stack.aio.stack import Stack, kernel_side
from stack.tcp.config import TcpConfig
from tunnel.capture import TunnelCapture
from tunnel.keys import ClusterKeys
from tunnel.pcap import PcapWriter, TeeDevice
from tunnel.peer import PeerSocket

from .node import AnycastNode, ClusterConfig

_log = structlog.get_logger("appliance.aio")


class AnycastStack(Stack):
    def __init__(
        self,
        device,
        addresses: Iterable[str],
        *,
        cluster: ClusterConfig,
        peers: Mapping[int, tuple],
        keys: ClusterKeys,
        config: TcpConfig | None = None,
        secret: bytes | None = None,
        incarnation: int | None = None,
    ) -> None:
        self._node_args = dict(
            cluster=cluster,
            peers=peers,
            keys=keys,
            # Wall-clock microseconds: a restarted node's incarnation is higher than its previous one's.
            incarnation=incarnation if incarnation is not None else time.time_ns() // 1000,
        )
        super().__init__(device, addresses, config=config, secret=secret)
        self.node: AnycastNode = self.runtime.host
        self.socket: PeerSocket | None = None
        self.capture: TunnelCapture | None = None  # records the tunnel's datagrams beside the TUN's packets
        self.runtime.after_output = self._send_datagrams
        self.runtime.schedule_flush()  # arms the first heartbeats

    async def open_peer_socket(self, listen: tuple[str, int]) -> PeerSocket:
        """Bind the UDP socket on the cluster network that carries forwarded segments and control messages."""
        if self.socket is not None:
            raise RuntimeError(f"this node already has its peer socket on {self.socket.local_address}")
        self.socket = await PeerSocket.open(listen, self._on_datagram)
        return self.socket

    def _make_engine(self, addresses, secret, mtu, config, ttl) -> AnycastNode:
        now = asyncio.get_running_loop().time()
        return AnycastNode(addresses, secret=secret, mtu=mtu, config=config, ttl=ttl, now=now, **self._node_args)

    @classmethod
    async def open(
        cls,
        *,
        tun: str,
        addresses: Iterable[str],
        listen: tuple[str, int],
        cluster: ClusterConfig,
        peers: Mapping[int, tuple],
        keys: ClusterKeys,
        mtu: int = 1500,
        config: TcpConfig | None = None,
        secret: bytes | None = None,
        netns=None,
        capture: PcapWriter | None = None,
        offload: bool = True,
    ) -> "AnycastStack":
        """Create the TUN device ``tun`` holding the anycast ``addresses`` (a /32 or /128 is routed into it) and
        the peer socket on ``listen``, and run the node on both. ``capture`` records both in one pcap file;
        ``offload`` asks for TUN offloads (``Stack.open_tun``)."""
        from tunnel.tun import TunDevice

        addresses = list(addresses)
        kernel, routes = kernel_side(addresses)
        loop = asyncio.get_running_loop()
        # With offloads, what the node forwards for a stranger is cut to datagram size first (AnycastNode._forward).
        device = await loop.run_in_executor(
            None, lambda: TunDevice.open(tun, addresses=kernel, mtu=mtu, routes=routes, netns=netns, offload=offload)
        )
        _log.info("tun.opened", name=tun, offloads=device.offloads)
        if capture is not None:
            device = TeeDevice(device, capture, clock=time.time)
        try:
            stack = cls(device, addresses, cluster=cluster, peers=peers, keys=keys, config=config, secret=secret)
        except BaseException:
            device.close()
            raise
        try:
            socket = await stack.open_peer_socket(listen)
        except BaseException:
            await stack.close()
            raise
        if capture is not None:
            stack.capture = TunnelCapture(capture, socket.local_address, time.time)
        return stack

    def _on_datagram(self, data: bytes, address: tuple) -> None:
        if self.capture is not None:
            self.capture.received(data, address)
        self.runtime.feed(self.node.receive_datagram, data)

    def _send_datagrams(self) -> None:
        datagrams = self.node.datagrams_to_send(self.loop.time())
        if datagrams and self.socket is not None:
            sendto, capture = self.socket.sendto, self.capture
            for address, datagram in datagrams:
                if sendto(datagram, address) and capture is not None:
                    capture.sent(datagram, address)

    def reconfigure(self, peers: Mapping[int, tuple], keys: ClusterKeys) -> None:
        """A new peer list and key set, taken at once (``AnycastNode.reconfigure``)."""
        self.node.reconfigure(peers, keys, self.loop.time())
        self.runtime.schedule_flush()

    async def release_claims(self, timeout: float) -> list[int]:
        """Release every claim and wait, at most ``timeout`` seconds, until every live peer has acknowledged it:
        after that, no peer routes this node's clients here. Returns the peers, live at the start, that did not
        (those going down at the same time, say)."""
        peers = self.node.peers
        live = [peer_id for peer_id, peer in peers.items() if peer.live]
        self.node.release_all(self.loop.time())
        self.runtime.schedule_flush()
        deadline = self.loop.time() + timeout
        while not self.node.control_settled and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        return [i for i in live if i not in peers or not peers[i].live or not peers[i].idle]

    async def close(self) -> None:
        await super().close()
        if self.socket is not None:
            self.socket.close()
