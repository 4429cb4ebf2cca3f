"""The wire-conformance harness: crafted IPv4 and IPv6 TCP segments into a TCP under test, its replies out, no kernel
TCP between the test and the stack.

Two TCPs sit behind the same interface, a ``Wire`` that injects raw IP packets and captures raw IP replies:

* ``LinuxTcp``: the reference. A plain TUN device in its own namespace; the kernel owns 10.81.0.1 and listens
  there; what the test writes to the TUN enters the kernel from a fake peer 10.81.0.9, what the kernel sends to
  that peer comes out of the TUN.
* ``OurTcp``: our ``Stack`` on its TUN in another namespace (10.71.0.2, the kernel side 10.71.0.1). An
  AF_PACKET socket bound to that TUN *sends* crafted packets out of the device, so our stack reads them; what
  our stack writes into the TUN enters the kernel as if received there, where the same AF_PACKET socket
  captures it. The fake peer 10.71.0.9 is not local and forwarding is off, so the kernel then drops the
  replies silently: its own TCP never sees them.

A ``Session`` is the fake peer's end of one connection. Each case opens its own (a fresh source port), drives it
into a state, sends one probe and classifies the replies relative to the session (``ack=rcv.nxt`` and so on),
never by exact bytes: the two TCPs choose different ISNs. After the probe a liveness check (an out-of-window ACK,
which a live connection answers with a duplicate ACK and a dead one with RST) tells whether the probe killed
the connection.

The closing states in which the server closes first need its application: each wire carries ``shutdown_write``,
which half-closes the server's end of the peer's connection (``shutdown(SHUT_WR)`` on the socket Linux accepted,
``write_eof()`` on our transport). Each TCP also answers on IPv6 (fd81::1 and fd71::2, fake peers fd81::9 and
fd71::9) through a second wire, ``wire6``.
"""

import asyncio
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from stack.wire import (
    ACK,
    FIN,
    PROTO_TCP,
    RST,
    SYN,
    TcpSegment,
    WireError,
    flags_str,
    internet_checksum,
    parse_ip,
    parse_tcp,
    pseudo_header_sum,
)

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PROTO_IPV6 = 6  # the IPv6 next-header value for TCP
PORT = 8000  # where each TCP under test listens
# smoltcp's habit: the peer's ISN just below 2^32, so every window position below crosses the wrap.
PEER_ISS = 0xFFFFFF00
MASK = 0xFFFFFFFF
# How long a probe waits for replies. Linux acknowledges at once in quick-ack mode; our delayed ACK is 40 ms.
QUIET = 0.12
HANDSHAKE_TIMEOUT = 2.0
# Linux rate-limits out-of-window duplicate ACKs and challenge ACKs (RFC 5961 §7); the matrix needs every one.
LINUX_SYSCTLS = {
    "net.ipv4.tcp_invalid_ratelimit": "0",
    "net.ipv4.tcp_challenge_ack_limit": "1000000",
    "net.ipv4.ip_forward": "0",
}


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def ip_bytes(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# -- crafting --------------------------------------------------------------------------------------------------


def craft(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    *,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
    data_offset: int | None = None,
    bad_checksum: bool = False,
    ihl: int | None = None,
    ipv6_payload_extra: int = 0,
) -> bytes:
    """An IPv4 or IPv6 packet (by the length of ``src``) carrying one TCP segment, built by hand so that every
    field can be wrong on purpose (the stack's own builder refuses to emit illegal headers). Only the requested
    fault is present: checksums are recomputed after every other edit. ``ihl`` is IPv4's, ``ipv6_payload_extra``
    (added to the IPv6 payload length) IPv6's."""
    assert len(options) % 4 == 0, "pad options to a 32-bit boundary"
    offset = 5 + len(options) // 4 if data_offset is None else data_offset
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & MASK, ack & MASK, offset << 4, flags, window, 0, 0)
    tcp = header + options + payload
    checksum = internet_checksum(tcp, pseudo_header_sum(src, dst, PROTO_TCP, len(tcp)))
    if bad_checksum:
        checksum ^= 0x5555  # never 0 <-> 0xFFFF, the one pair of equivalent checksum values
    tcp = tcp[:16] + struct.pack("!H", checksum) + tcp[18:]
    if len(src) == 16:
        assert ihl is None, "IPv6 has no IHL"
        return struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + ipv6_payload_extra, PROTO_IPV6, 64, src, dst) + tcp
    assert not ipv6_payload_extra, "an IPv4 packet has no IPv6 payload length"
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl or 5), 0, 20 + len(tcp), 0, 0x4000, 64, PROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return ip + tcp


# -- wires -----------------------------------------------------------------------------------------------------


class Wire:
    """Raw IP packets to and from one TCP under test."""

    server_ip: bytes  # the address of the TCP under test
    peer_ip: bytes  # the fake peer the test plays
    shutdown_write: Callable[[int], None]  # half-close the server's end of the connection from the peer's port

    def inject(self, packet: bytes) -> None:
        raise NotImplementedError

    def _receive(self, timeout: float) -> list[bytes]:
        raise NotImplementedError

    def capture(
        self, sport: int, timeout: float, *, first: bool = False, ignore: Callable[[TcpSegment], bool] | None = None
    ) -> list[TcpSegment]:
        """TCP segments from the server to the peer's ``sport`` within ``timeout`` (until the first one if
        ``first``). Everything else (other sessions' retransmissions, the kernel's IPv6 chatter, and what
        ``ignore`` names) is dropped."""
        deadline = time.monotonic() + timeout
        segments: list[TcpSegment] = []
        while (left := deadline - time.monotonic()) > 0:
            for data in self._receive(left):
                try:
                    packet = parse_ip(data)
                    if packet.protocol != PROTO_TCP or packet.src != self.server_ip or packet.dst != self.peer_ip:
                        continue
                    seg = parse_tcp(packet.payload, packet.src, packet.dst)
                except WireError:
                    continue
                if seg.dst_port == sport and seg.src_port == PORT and not (ignore and ignore(seg)):
                    segments.append(seg)
            if first and segments:
                break
        return segments


class TunWire(Wire):
    """The test holds the TUN's file descriptor: writes enter the kernel, the kernel's output is read back."""

    def __init__(self, tun, server_ip: str, peer_ip: str, shutdown_write: Callable[[int], None]) -> None:
        self.tun, self.server_ip, self.peer_ip = tun, ip_bytes(server_ip), ip_bytes(peer_ip)
        self.shutdown_write = shutdown_write

    def inject(self, packet: bytes) -> None:
        os.write(self.tun.fileno(), packet)

    def _receive(self, timeout: float) -> list[bytes]:
        ready, _, _ = select.select([self.tun.fileno()], [], [], timeout)
        return self.tun.read_batch() if ready else []


class PacketSocketWire(Wire):
    """An AF_PACKET socket on our stack's TUN: what it sends leaves through the device into our stack; what our
    stack writes arrives on the device, where the socket sees it before the kernel drops it."""

    def __init__(self, ns, ifname: str, server_ip: str, peer_ip: str, shutdown_write: Callable[[int], None]) -> None:
        self.ifname, self.server_ip, self.peer_ip = ifname, ip_bytes(server_ip), ip_bytes(peer_ip)
        self.shutdown_write = shutdown_write
        self.ethertype = ETH_P_IPV6 if len(self.server_ip) == 16 else ETH_P_IP

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(self.ethertype))
            sock.bind((ifname, self.ethertype))
            return sock

        self.sock = ns.call_inside(open_socket)  # created inside the namespace, so it sees that namespace's TUN

    def inject(self, packet: bytes) -> None:
        self.sock.sendto(packet, (self.ifname, self.ethertype))

    def _receive(self, timeout: float) -> list[bytes]:
        self.sock.settimeout(timeout)
        try:
            data, (_, _, pkttype, _, _) = self.sock.recvfrom(65535)
        except TimeoutError:
            return []
        return [] if pkttype == socket.PACKET_OUTGOING else [data]

    def close(self) -> None:
        self.sock.close()


# -- the TCPs under test ---------------------------------------------------------------------------------------


class LinuxTcp:
    """The kernel's TCP listening on 10.81.0.1:PORT and [fd81::1]:PORT behind a TUN the test holds. Connections
    stay in the accept queue until a test wants to close the server's end: then the listener accepts (holding
    every socket it takes, by the peer's port) until it has that one."""

    name = "linux"

    def __init__(self) -> None:
        from tunnel.netns import NetNamespace
        from tunnel.tun import TunDevice

        self.ns = NetNamespace.create()
        self.tun = None
        self.listeners: dict[int, socket.socket] = {}
        self.accepted: dict[int, socket.socket] = {}
        self.accept_lock = threading.Lock()
        try:
            for key, value in LINUX_SYSCTLS.items():
                self.ns.run(["sysctl", "-qw", f"{key}={value}"], check=True)
            addresses = ["10.81.0.1/24", "fd81::1/64"]
            # Plain packets both ways: the wire compares segments, and injects them with bad checksums too.
            self.tun = TunDevice.open("atcp" + self.ns.name[-8:], addresses=addresses, netns=self.ns, offload=False)
            for family, address in ((socket.AF_INET, "10.81.0.1"), (socket.AF_INET6, "fd81::1")):
                self.listeners[family] = self.ns.call_inside(lambda f=family, a=address: self._listen(f, a))
            self.wire = TunWire(self.tun, "10.81.0.1", "10.81.0.9", lambda p: self._shutdown(socket.AF_INET, p))
            self.wire6 = TunWire(self.tun, "fd81::1", "fd81::9", lambda p: self._shutdown(socket.AF_INET6, p))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _listen(family: int, address: str) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, PORT))
        sock.listen(4096)
        sock.settimeout(HANDSHAKE_TIMEOUT)
        return sock

    def _shutdown(self, family: int, peer_port: int) -> None:
        with self.accept_lock:
            while peer_port not in self.accepted:
                conn, address = self.listeners[family].accept()
                self.accepted[address[1]] = conn
            self.accepted[peer_port].shutdown(socket.SHUT_WR)

    def close(self) -> None:
        try:
            for sock in [*self.accepted.values(), *self.listeners.values()]:
                sock.close()
            if self.tun is not None:
                self.tun.close()
        finally:
            self.ns.close()


class OurTcp:
    """Our ``Stack`` listening on 10.71.0.2:PORT and [fd71::2]:PORT, its event loop in a thread of its own so that
    the test can block on the packet socket."""

    name = "ours"

    def __init__(self) -> None:
        from tunnel.netns import NetNamespace

        self.ns = NetNamespace.create()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="our-stack", daemon=True)
        self.thread.start()
        self.stack = None
        self.wire = self.wire6 = None
        # By the peer's port; held so that no accepted connection is closed behind the test's back.
        self.writers: dict[int, asyncio.StreamWriter] = {}
        try:
            ifname = "atcp" + self.ns.name[-8:]
            self.stack = self._call(self._open(ifname))
            self.ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
            self.ns.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"], check=True)
            self.wire = PacketSocketWire(self.ns, ifname, "10.71.0.2", "10.71.0.9", self._shutdown)
            self.wire6 = PacketSocketWire(self.ns, ifname, "fd71::2", "fd71::9", self._shutdown)
        except BaseException:
            self.close()
            raise

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _open(self, ifname: str):
        from stack import Stack

        # Segment for segment, as the kernel's side is compared: no super-segments from the device.
        stack = await Stack.open_tun(ifname, ["10.71.0.2/24", "fd71::2/64"], netns=self.ns, offload=False)
        await stack.start_server(self._hold, None, PORT, backlog=4096)
        return stack

    async def _hold(self, reader, writer) -> None:
        self.writers[writer.get_extra_info("peername")[1]] = writer

    def _shutdown(self, peer_port: int) -> None:
        async def write_eof() -> None:
            deadline = self.loop.time() + HANDSHAKE_TIMEOUT
            while peer_port not in self.writers:  # the accept callback may trail the handshake's last ACK
                if self.loop.time() > deadline:
                    raise TimeoutError(f"no accepted connection from port {peer_port}")
                await asyncio.sleep(0.002)
            self.writers[peer_port].write_eof()

        self._call(write_eof())

    def close(self) -> None:
        try:
            for wire in (self.wire, self.wire6):
                if wire is not None:
                    wire.close()
            if self.stack is not None:
                self._call(self.stack.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.ns.close()


# -- sessions and classes --------------------------------------------------------------------------------------

_ports = iter(range(20000, 60000))
_ports_lock = threading.Lock()


def next_port() -> int:
    with _ports_lock:
        return next(_ports)


@dataclass
class Session:
    """The fake peer's end of one connection to the TCP under test, with the RFC 9293 names seen from the other
    side: ``snd_nxt`` here is the server's RCV.NXT, ``rcv_nxt`` the server's SND.NXT, ``rcv_wnd`` the window
    the server last advertised (its RCV.WND)."""

    wire: Wire
    sport: int = field(default_factory=next_port)
    snd_nxt: int = PEER_ISS
    rcv_nxt: int = 0
    rcv_wnd: int = 0
    synchronized: bool = False  # whether rcv_nxt and rcv_wnd come from the server's SYN-ACK
    server_fin: int | None = None  # the sequence number of the server's FIN, once it has sent one

    def packet(self, flags: int, seq: int, ack: int, payload: bytes = b"", **faults) -> bytes:
        w = self.wire
        return craft(w.peer_ip, w.server_ip, self.sport, PORT, seq, ack, flags, payload=payload, **faults)

    def exchange(self, packet: bytes, timeout: float = QUIET, *, first: bool = False) -> list[TcpSegment]:
        self.wire.inject(packet)
        return self.wire.capture(self.sport, timeout, first=first, ignore=self._fin_retransmission)

    def _fin_retransmission(self, seg: TcpSegment) -> bool:
        """The server's FIN again, sent by its retransmission timer (200 ms minimum in both TCPs) while the peer
        leaves it unacknowledged: not a reply to anything, so not part of any class."""
        return self.server_fin is not None and seg.flags & FIN != 0 and seg.seq == self.server_fin

    def half_open(self) -> "Session":
        """SYN from the peer and the server's SYN-ACK, left unacknowledged: the server is SYN-RECEIVED."""
        replies = self.exchange(self.packet(SYN, PEER_ISS, 0), HANDSHAKE_TIMEOUT, first=True)
        assert replies and replies[0].flags & (SYN | ACK) == SYN | ACK, f"no SYN-ACK: {replies}"
        synack = replies[0]
        assert synack.ack == (PEER_ISS + 1) & MASK
        self.snd_nxt = (PEER_ISS + 1) & MASK
        self.rcv_nxt = (synack.seq + 1) & MASK
        self.rcv_wnd = synack.window  # no window scaling offered, so the field is the window
        self.synchronized = True
        return self

    def open(self) -> "Session":
        """Three-way handshake from the peer: SYN, the server's SYN-ACK, our ACK. The server is ESTABLISHED."""
        self.half_open()
        self.wire.inject(self.packet(ACK, self.snd_nxt, self.rcv_nxt))
        return self

    def open_and_close(self) -> "Session":
        """The handshake, then our FIN, which the server acknowledges: it is CLOSE-WAIT (its application has
        not closed)."""
        self.open()
        replies = self.exchange(self.packet(FIN | ACK, self.snd_nxt, self.rcv_nxt), HANDSHAKE_TIMEOUT, first=True)
        self.snd_nxt = (self.snd_nxt + 1) & MASK
        assert replies and replies[0].flags == ACK and replies[0].ack == self.snd_nxt, f"FIN not acked: {replies}"
        self.rcv_wnd = replies[0].window  # Linux's window may have moved since its SYN-ACK
        return self

    def await_server_fin(self) -> "Session":
        """Half-close the server's end and capture its FIN; the peer does not acknowledge it (``rcv_nxt`` stays
        at the FIN's sequence number, so the probes acknowledge everything but the FIN)."""
        self.wire.shutdown_write(self.sport)
        replies = self.wire.capture(self.sport, HANDSHAKE_TIMEOUT, first=True)
        assert replies and replies[0].flags == FIN | ACK, f"no FIN from the server: {replies}"
        fin = replies[0]
        assert fin.seq == self.rcv_nxt and fin.ack == self.snd_nxt and not fin.payload, f"odd FIN: {fin}"
        self.server_fin = fin.seq
        self.rcv_wnd = fin.window
        return self

    def _peer_fin(self) -> None:
        """The peer's FIN, acknowledging what ``rcv_nxt`` says (the server's FIN or not), and the server's ACK."""
        replies = self.exchange(self.packet(FIN | ACK, self.snd_nxt, self.rcv_nxt), HANDSHAKE_TIMEOUT, first=True)
        self.snd_nxt = (self.snd_nxt + 1) & MASK
        assert replies and replies[0].flags == ACK and replies[0].ack == self.snd_nxt, f"FIN not acked: {replies}"
        self.rcv_wnd = replies[0].window

    def fin_wait_1(self) -> "Session":
        """The handshake, then the server half-closes: it is FIN-WAIT-1, its FIN unacknowledged."""
        return self.open().await_server_fin()

    def fin_wait_2(self) -> "Session":
        """FIN-WAIT-1, then the peer acknowledges the server's FIN (which draws no reply): FIN-WAIT-2."""
        self.fin_wait_1()
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self.wire.inject(self.packet(ACK, self.snd_nxt, self.rcv_nxt))
        return self

    def closing(self) -> "Session":
        """FIN-WAIT-1, then the peer's FIN crosses the server's (it does not acknowledge the server's FIN): the
        server acknowledges it and is CLOSING."""
        self.fin_wait_1()._peer_fin()
        return self

    def last_ack(self) -> "Session":
        """CLOSE-WAIT, then the server half-closes: it is LAST-ACK, its FIN unacknowledged."""
        return self.open_and_close().await_server_fin()

    def time_wait(self) -> "Session":
        """FIN-WAIT-2, then the peer's FIN, which the server acknowledges: it is TIME-WAIT."""
        self.fin_wait_2()._peer_fin()
        return self

    def alive(self) -> str:
        """Whether the server still has this connection: an out-of-window ACK draws a duplicate ACK from a live
        one (RFC 9293 §3.10.7.4 first check) and an RST from none (§3.10.7.1)."""
        far = (self.snd_nxt + (1 << 30)) & MASK
        replies = self.exchange(self.packet(ACK, far, self.rcv_nxt), first=True)
        if not replies:
            return "silent"
        return "reset" if replies[0].flags & RST else "alive"


def describe(replies: list[TcpSegment], session: Session, probe_seq: int, probe_end: int, probe_ack: int) -> str:
    """The reply class: the flags of each distinct reply, with its numbers relative to the session or probe."""
    if not replies:
        return "NONE"
    parts: list[str] = []
    for seg in replies:
        text = flags_str(seg.flags & (FIN | SYN | RST | ACK))
        if seg.flags & RST and not seg.flags & ACK:
            text += " seq=seg.ack" if seg.seq == probe_ack else f" seq={seg.seq}"
        if seg.flags & ACK:
            if session.synchronized and seg.ack == session.snd_nxt:
                text += " ack=rcv.nxt"
            elif seg.ack == probe_end:
                text += " ack=seg.end"
            else:
                text += f" ack=rcv.nxt{(seg.ack - session.snd_nxt) & MASK:+d}"
        if seg.payload:
            text += f" +{len(seg.payload)}B"
        if text not in parts:
            parts.append(text)
    return ", ".join(parts)


@dataclass(frozen=True)
class Probe:
    """One crafted segment, described relative to a session: its flags, where its sequence number falls and
    what it acknowledges, plus at most one fault."""

    flags: int
    position: str = "rcv.nxt"
    payload: bytes = b""
    ack: str = "snd.nxt"  # "snd.nxt" (acceptable), "zero"
    faults: tuple = ()

    def seq_for(self, s: Session) -> int:
        offsets = {
            "rcv.nxt-1": -1,
            "rcv.nxt": 0,
            "inside": s.rcv_wnd // 2,
            "last-in-window": s.rcv_wnd - 1,
            "right-edge": s.rcv_wnd,
            "beyond": s.rcv_wnd + 10_000,
        }
        return (s.snd_nxt + offsets[self.position]) & MASK

    def send(self, s: Session) -> str:
        seq = self.seq_for(s)
        ack = s.rcv_nxt if self.ack == "snd.nxt" else 0
        end = (seq + len(self.payload) + bool(self.flags & SYN) + bool(self.flags & FIN)) & MASK
        replies = s.exchange(s.packet(self.flags, seq, ack, self.payload, **dict(self.faults)))
        return describe(replies, s, seq, end, ack)


def against_listener(wire: Wire, probe: Probe) -> str:
    """The probe as the first segment of a new 4-tuple, to a listening port (RFC 9293 §3.10.7.2)."""
    session = Session(wire, snd_nxt=PEER_ISS, rcv_nxt=0x12345678)
    return probe.send(session)


# How the fake peer brings the server into each synchronized state.
STATES: dict[str, Callable[[Session], Session]] = {
    "SYN-RECEIVED": Session.half_open,
    "ESTABLISHED": Session.open,
    "CLOSE-WAIT": Session.open_and_close,
    "FIN-WAIT-1": Session.fin_wait_1,
    "FIN-WAIT-2": Session.fin_wait_2,
    "CLOSING": Session.closing,
    "LAST-ACK": Session.last_ack,
    "TIME-WAIT": Session.time_wait,
}


def in_state(state: str) -> Callable[[Wire, Probe], str]:
    """A runner: the probe into a connection in ``state`` (RFC 9293 §3.10.7.4), then the liveness check."""

    def run(wire: Wire, probe: Probe) -> str:
        session = STATES[state](Session(wire))
        reply = probe.send(session)
        return f"{reply} / {session.alive()}"

    return run


_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="conformance")


def on_both(
    linux: LinuxTcp, ours: OurTcp, run: Callable[[Wire, Probe], str], probe: Probe, *, ipv6: bool = False
) -> tuple[str, str]:
    """Run the same case against both TCPs at once (they share nothing), returning (Linux class, our class)."""
    theirs = _pool.submit(run, linux.wire6 if ipv6 else linux.wire, probe)
    mine = _pool.submit(run, ours.wire6 if ipv6 else ours.wire, probe)
    return theirs.result(30), mine.result(30)
