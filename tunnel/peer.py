"""The UDP socket between cluster nodes, on the running event loop. It moves sealed datagrams and nothing else:
sealing and opening are ``encap``'s, deciding where to send is the node's.

The socket is driven with ``add_reader`` and sent on directly rather than through ``create_datagram_endpoint``:
a tunnel datagram that cannot go now is dropped and counted (TCP inside retransmits), never queued, and asyncio's
and uvloop's datagram transports differ in whether a failed ``sendto`` raises, reports or buffers.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

READ_BATCH = 64  # datagrams drained per wake-up, like the TUN device: bounded work per loop turn
RECV_SIZE = 65535  # the largest UDP payload over IPv6 (65527) and IPv4 (65507) both fit
SOCKET_BUFFER = 8 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux socket(7)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


@dataclass(slots=True)
class PeerStats:
    """Plain counters, so reading them costs nothing and they never raise."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    send_errors: int = 0  # sendto failed: no route, EMSGSIZE, buffer full (EAGAIN), unreachable; the datagram is gone
    receive_errors: int = 0  # recvfrom failed with something other than "nothing waiting" (e.g. a queued ICMP error)
    last_send_error: str = ""  # the latest send error's text, for an operator asking why


def _check_listen(listen: object) -> tuple[str, int, int]:
    if not isinstance(listen, tuple) or len(listen) != 2:
        raise ValueError(f"listen must be a (host, port) tuple like ('0.0.0.0', 6080) or ('::', 6080), got {listen!r}")
    host, port = listen
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"listen host {host!r} must be an IP address like '0.0.0.0', '::' or '192.0.2.1', not a host name"
        ) from None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"listen port {port!r} must be 0 to 65535 (6080 is GUE's IANA port; 0 picks a free one)")
    return str(address), port, socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _enlarge_buffers(sock: socket.socket) -> None:
    """Room for a burst of forwarded segments while the loop is busy: the default (about 200 KiB, a few hundred
    datagrams) overflows under load and every overflow is a lost ACK. As root the FORCE options pass
    net.core.rmem_max/wmem_max; otherwise the kernel clamps the plain ones to those limits."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


class PeerSocket:
    """A bound UDP socket that hands every datagram it receives to ``on_datagram(data, address)`` and sends with
    ``sendto``. An IPv6 socket's addresses are 4-tuples ``(host, port, flowinfo, scope_id)``; pass them back as
    they came. Peers are reached in the listen address's family."""

    def __init__(
        self, sock: socket.socket, on_datagram: Callable[[bytes, tuple], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._sock = sock
        self._on_datagram = on_datagram
        self._loop = loop
        self.stats = PeerStats()
        self.local_address: tuple = sock.getsockname()  # with port 0, the port the kernel chose
        self._closed = False
        loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def open(cls, listen: tuple[str, int], on_datagram: Callable[[bytes, tuple], None]) -> "PeerSocket":
        host, port, family = _check_listen(listen)
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                # One family per socket, whatever net.ipv6.bindv6only says: the node names peers in that family.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            _enlarge_buffers(sock)
            sock.bind((host, port))
            return cls(sock, on_datagram, loop)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"cannot listen on UDP {host} port {port}: {exc.strerror}; check no other process holds the port "
                "and that this host has the address",
            ) from None

    def _read_ready(self) -> None:
        recvfrom, deliver, stats = self._sock.recvfrom, self._on_datagram, self.stats
        for _ in range(READ_BATCH):
            try:
                data, address = recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                stats.receive_errors += 1
                continue
            stats.datagrams_in += 1
            stats.bytes_in += len(data)
            deliver(data, address)

    def sendto(self, data: bytes, address: tuple) -> bool:
        """Send one datagram; False when it could not go now (counted in ``stats``), never an exception for that."""
        if self._closed:
            raise ValueError(f"sendto on a closed PeerSocket (was {self.local_address})")
        try:
            self._sock.sendto(data, address)
        except OSError as exc:
            self.stats.send_errors += 1
            self.stats.last_send_error = f"{address}: {exc}"
            return False
        self.stats.datagrams_out += 1
        self.stats.bytes_out += len(data)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
