"""A TCP/IP host, sans-I/O: IP packets in, IP packets out, connections demultiplexed by 4-tuple.

The host knows nothing of anycast. It takes two policies that the anycast node replaces: what to do with a
segment that matches no connection (default: the RST that RFC 9293 §3.10.7.1 requires) and where initial
sequence numbers come from (default: RFC 6528).
"""

import dataclasses
import hashlib
import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable

from .addresses import Address, is_unicast_source, packed
from .seq import seq_add, seq_lt
from .tcp.config import TcpConfig
from .tcp.connection import Connection
from .tcp.errors import LocalProtocolError
from .tcp.events import Closed, Established, Event
from .tcp.icmp import classify
from .tcp.isn import IsnSource, Rfc6528Isn
from .tcp.reset import reset_for
from .tcp.state import State
from .tcp.syncookie import PERIOD as COOKIE_PERIOD
from .tcp.syncookie import SynCookies, options_from_timestamp, timestamp_with_options
from .tcp.timestamps import Timestamps
from .wire import (
    ACK,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    RST,
    SYN,
    IcmpMessage,
    IpPacket,
    QuotedTcp,
    TcpOptions,
    TcpSegment,
    WireError,
    build_tcp_packet,
    parse_icmp,
    parse_ip,
    parse_quoted_tcp,
    parse_tcp,
)
from .wire.tso import build_tso_packet

DEFAULT_MAX_CONNECTIONS = 1 << 20  # about 4 GB of connections at 3.7 KB each; bounded memory whatever arrives
# RFC 6335 §6: the dynamic (ephemeral) port range.
EPHEMERAL_PORTS = range(49152, 65536)
IPV4_HEADER = 20
IPV6_HEADER = 40
TCP_HEADER = 20

UnmatchedHandler = Callable[["Host", IpPacket, TcpSegment, float], None]
UnmatchedIcmpHandler = Callable[["Host", IpPacket, IcmpMessage, QuotedTcp, float], None]
# Offered a segment whose ACK a half-open (SYN-RECEIVED) connection cannot accept; True means the policy took it
# and the half-open connection is discarded silently instead of answering with the RST of RFC 9293 §3.10.7.4.
ForeignAckHandler = Callable[["Host", IpPacket, TcpSegment, float], bool]
ConnectionHook = Callable[[Connection], None]


def reset_unmatched(host: "Host", packet: IpPacket, seg: TcpSegment, now: float) -> None:
    """The plain-TCP policy for a segment no connection or listener takes: RFC 9293 §3.10.7.1."""
    rst = reset_for(seg)
    if rst is not None:
        host.send_segment(packet.dst, packet.src, rst)


def drop_unmatched_icmp(host: "Host", packet: IpPacket, msg: IcmpMessage, quoted: QuotedTcp, now: float) -> None:
    """An ICMP error about a connection we do not have: nothing to tell anyone (plain TCP)."""
    host.drops["icmp_no_connection"] += 1


class Listener:
    """A passive open on an address (or all of the host's addresses) and port, with a backlog."""

    __slots__ = ("addr", "backlog", "config", "max_connections", "open", "overflowed_at", "pending", "port")

    def __init__(
        self, addr: Address | None, port: int, backlog: int, config: TcpConfig | None, max_connections: int | None
    ) -> None:
        self.addr = addr
        self.port = port
        self.backlog = backlog
        self.config = config
        self.max_connections = max_connections  # connections from this listener open at once (None: no limit)
        self.open = 0  # counted only when there is a limit
        # Connections from this listener the application has not yet been told of (handshaking or queued).
        self.pending = 0
        self.overflowed_at = -math.inf  # when a SYN last found the backlog full (SYN cookies went out)


class Host:
    def __init__(
        self,
        addresses: Iterable[str | bytes],
        *,
        secret: bytes,
        mtu: int = 1500,
        config: TcpConfig | None = None,
        isn_source: IsnSource | None = None,
        unmatched: UnmatchedHandler = reset_unmatched,
        unmatched_icmp: UnmatchedIcmpHandler = drop_unmatched_icmp,
        foreign_ack: ForeignAckHandler | None = None,
        on_open: ConnectionHook | None = None,
        on_close: ConnectionHook | None = None,
        ttl: int = 64,
        syn_cookies: SynCookies | bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.addresses: frozenset[Address] = frozenset(packed(a) for a in addresses)
        if not self.addresses:
            raise ValueError("a Host needs at least one address")
        if not IPV6_HEADER + TCP_HEADER + 64 <= mtu <= 65535:
            raise ValueError(f"mtu={mtu} is out of range: use 124 to 65535 (1500 for Ethernet)")
        base = config or TcpConfig()
        # RFC 9293 §3.7.1 (MUST-14, MUST-67): advertise what fits in one IP datagram of our MTU.
        self._config_v4 = dataclasses.replace(base, mss=min(base.mss, mtu - IPV4_HEADER - TCP_HEADER))
        self._config_v6 = dataclasses.replace(base, mss=min(base.mss, mtu - IPV6_HEADER - TCP_HEADER))
        self.mtu = mtu
        self.ttl = ttl
        if max_connections < 1:
            raise ValueError(f"max_connections={max_connections} must be at least 1")
        # Every connection in the table, TIME-WAIT included: beyond it, SYNs are dropped and connect() refuses.
        self.max_connections = max_connections
        self._listener_of: dict[Connection, Listener] = {}  # for listeners with a connection limit only
        self._secret = hashlib.blake2s(secret, person=b"ports").digest()
        self.isn_source: IsnSource = isn_source or Rfc6528Isn(secret)
        # RFC 4987 §3.6, on by default as in Linux (tcp_syncookies=1): only a listener whose backlog is full sends
        # them. True: cookies anywhere in the sequence space; a SynCookies: the caller's range (the anycast node).
        self.syn_cookies: SynCookies | None = (
            SynCookies(secret) if syn_cookies is True else None if syn_cookies is False else syn_cookies
        )
        self.unmatched = unmatched
        self.unmatched_icmp = unmatched_icmp
        self.foreign_ack = foreign_ack
        self.on_open = on_open  # called with every connection entering the table, before its first segment
        self.on_close = on_close  # called with every connection leaving it (CLOSED, TIME-WAIT over included)
        self.connections: dict[tuple[Address, int, Address, int], Connection] = {}
        self.listeners: dict[tuple[Address | None, int], Listener] = {}
        self._embryonic: dict[Connection, Listener | None] = {}  # passive, not yet announced to the application
        self._dirty: dict[Connection, None] = {}  # may have output or a new deadline (insertion-ordered set)
        # Connections that may have events, in the order they got them: a queue, and a set for membership (a
        # dict drained from the front would leave deleted slots that every later lookup of its head walks over).
        self._event_queue: deque[Connection] = deque()
        self._event_ready: set[Connection] = set()
        self._timers: list[tuple[float, int, Connection]] = []
        self._armed: dict[Connection, float] = {}
        self._timer_seq = 0
        self._raw_out: list[bytes] = []
        self._next_ephemeral = 0
        self.drops: Counter[str] = Counter()
        self.packets_in = 0
        self.packets_out = 0
        self.retransmits_of_closed = 0  # with the open connections' own counts, a total that never falls
        # Payload bytes per transmission for a device with TCP segmentation offload (0: none); the runtime sets it
        # from what the device was granted, before any connection exists.
        self.tso_limit = 0

    def config_for(self, addr: Address) -> TcpConfig:
        return self._config_v4 if len(addr) == 4 else self._config_v6

    # ---------------------------------------------------------------------------------------------------------
    # Application calls

    def listen(
        self,
        port: int,
        addr: str | bytes | None = None,
        *,
        backlog: int = 128,
        config: TcpConfig | None = None,
        max_connections: int | None = None,
    ) -> Listener:
        local = None if addr is None else packed(addr)
        if local is not None and local not in self.addresses:
            raise LocalProtocolError(f"cannot listen on an address this host does not have: {addr}")
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port {port} is out of range 1-65535")
        if backlog < 1:
            raise LocalProtocolError(f"backlog={backlog} must be at least 1")
        if max_connections is not None and max_connections < 1:
            raise LocalProtocolError(f"max_connections={max_connections} must be at least 1 (or None: no limit)")
        if (local, port) in self.listeners:
            raise LocalProtocolError(f"already listening on port {port}: close that listener first")
        listener = Listener(local, port, backlog, config, max_connections)
        self.listeners[(local, port)] = listener
        return listener

    def unlisten(self, listener: Listener) -> None:
        """Stop accepting new connections on ``listener``; connections already made go on."""
        self.listeners.pop((listener.addr, listener.port), None)

    def connect(
        self,
        remote_addr: str | bytes,
        remote_port: int,
        now: float,
        *,
        local_addr: str | bytes | None = None,
        local_port: int | None = None,
        config: TcpConfig | None = None,
    ) -> Connection:
        remote = packed(remote_addr)
        if not is_unicast_source(remote):
            # RFC 9293 §3.9.1.1 (MUST-46): "reject as an error a local OPEN call for an invalid remote IP address".
            raise LocalProtocolError(f"cannot connect to {remote_addr}: it is not a unicast address")
        if local_addr is None:
            local = next((a for a in sorted(self.addresses) if len(a) == len(remote)), None)
            if local is None:
                raise LocalProtocolError(f"this host has no address of the family of {remote_addr}")
        else:
            local = packed(local_addr)
            if local not in self.addresses:
                raise LocalProtocolError(f"cannot connect from an address this host does not have: {local_addr}")
        if not 0 < remote_port < 65536:
            raise LocalProtocolError(f"port {remote_port} is out of range 1-65535")
        if local_port is None:
            local_port = self._ephemeral_port(local, remote, remote_port)
        elif (local, local_port, remote, remote_port) in self.connections:
            raise LocalProtocolError(f"local port {local_port} is already connected to that peer")
        iss = self.isn_source(local, local_port, remote, remote_port, now)
        if len(self.connections) >= self.max_connections:
            raise LocalProtocolError(
                f"this host holds max_connections={self.max_connections} connections: close some, or raise the limit"
            )
        conn = self._register(local, local_port, remote, remote_port, iss, config or self.config_for(local))
        conn.connect(now)
        return conn

    def _ephemeral_port(self, local: Address, remote: Address, remote_port: int) -> int:
        """RFC 6056 §3.3.3 (Algorithm 3): a keyed hash of the endpoints picks where to start looking, so ports
        are hard to guess yet successive connections to one peer do not collide."""
        digest = hashlib.blake2s(local + remote + remote_port.to_bytes(2, "big"), key=self._secret, digest_size=4)
        offset = int.from_bytes(digest.digest(), "big")
        count = len(EPHEMERAL_PORTS)
        for i in range(count):
            port = EPHEMERAL_PORTS[(offset + self._next_ephemeral + i) % count]
            if (local, port, remote, remote_port) not in self.connections:
                self._next_ephemeral += i + 1
                return port
        raise LocalProtocolError("no free ephemeral port towards that peer: close some connections first")

    def next_event(self) -> tuple[Connection, Event] | None:
        """The next event of any connection the application knows of, with that connection. A passive
        connection first appears with its ``Established`` event."""
        queue, ready = self._event_queue, self._event_ready
        while queue:
            conn = queue[0]
            event = conn.next_event()
            if event is None:
                queue.popleft()
                ready.discard(conn)
                continue
            if conn in self._embryonic:
                listener = self._embryonic[conn]
                if isinstance(event, Established):
                    del self._embryonic[conn]
                    if listener is not None:
                        listener.pending -= 1
                    return conn, event
                if isinstance(event, Closed):
                    del self._embryonic[conn]  # died before the application ever saw it
                continue
            return conn, event
        return None

    def send_segment(self, local: Address, remote: Address, seg: TcpSegment) -> None:
        """Queue a segment that belongs to no connection (a policy's RST, for instance)."""
        self._raw_out.append(build_tcp_packet(seg, local, remote, ttl=self.ttl))

    # ---------------------------------------------------------------------------------------------------------
    # Packets

    def receive_packet(self, data: bytes, now: float, verified: bool = False) -> None:
        """Take one IP datagram from the device. Malformed input is dropped and counted in ``drops``. ``verified``
        says the device has checked (or produced) its transport checksum, so it is not checked again."""
        self.packets_in += 1
        try:
            packet = parse_ip(data)
        except WireError:
            self.drops["bad_ip"] += 1
            return
        if packet.dst not in self.addresses:
            self.drops["not_our_address"] += 1
            return
        if packet.is_fragment:
            # Peers never fragment TCP here: our MSS fits the MTU and we set DF. Reassembly is not built.
            self.drops["fragment"] += 1
            return
        if packet.protocol != PROTO_TCP:
            if packet.protocol == (PROTO_ICMP if packet.version == 4 else PROTO_ICMPV6):
                self.receive_icmp(packet, now)
            else:
                self.drops["not_tcp"] += 1
            return
        if not is_unicast_source(packet.src):
            self.drops["bad_source"] += 1
            return
        try:
            seg = parse_tcp(packet.payload, packet.src, packet.dst, verify_checksum=not verified)
        except WireError:
            self.drops["bad_tcp"] += 1
            return
        self.receive_segment(packet, seg, now)

    def receive_icmp(self, packet: IpPacket, now: float) -> None:
        """RFC 9293 §3.9.2.2 (MUST-54): an ICMP error goes to the connection whose segment it quotes."""
        try:
            msg = parse_icmp(packet.payload, version=packet.version, src=packet.src, dst=packet.dst)
        except WireError:
            self.drops["bad_icmp"] += 1
            return
        if not msg.is_error:
            self.drops["icmp_not_error"] += 1
            return
        try:
            quoted = parse_quoted_tcp(msg.payload)
        except WireError:
            self.drops["icmp_not_about_tcp"] += 1
            return
        conn = self.connections.get((quoted.src, quoted.src_port, quoted.dst, quoted.dst_port))
        if conn is None:
            self.unmatched_icmp(self, packet, msg, quoted, now)
            return
        if not conn.on_icmp_error(classify(msg), quoted.seq, now):
            self.drops["icmp_out_of_window"] += 1
        self._dirty[conn] = None

    def receive_segment(self, packet: IpPacket, seg: TcpSegment, now: float) -> None:
        """Demultiplex one parsed, checksum-verified segment."""
        conn = self.connections.get((packet.dst, seg.dst_port, packet.src, seg.src_port))
        if conn is not None:
            state = conn.state
            if state is State.TIME_WAIT and self._reopens_time_wait(conn, seg):
                conn.expire_time_wait(now)
                self._forget(conn)
            elif state is State.SYN_RECEIVED and self._foreign_ack_taken(conn, packet, seg, now):
                conn.discard(now)
                self._dirty[conn] = None
                return
            else:
                conn.receive_segment(seg, now)
                self._dirty[conn] = None
                return
        if not seg.flags & (ACK | RST):
            listener = self.listeners.get((packet.dst, seg.dst_port)) or self.listeners.get((None, seg.dst_port))
            if listener is not None:
                if seg.flags & SYN:
                    self._accept_syn(listener, packet, seg, now, previous=conn)
                else:
                    # RFC 9293 §3.10.7.2 LISTEN, fourth: "Any other control or text-bearing segment (not
                    # containing SYN) must have an ACK ... Drop the segment and return."
                    self.drops["listen_no_ack"] += 1
                return
        elif not seg.flags & (SYN | RST) and conn is None and self._accepts_cookie(packet, seg, now):
            return
        self.unmatched(self, packet, seg, now)

    def _accepts_cookie(self, packet: IpPacket, seg: TcpSegment, now: float) -> bool:
        """A bare ACK for no connection, to a listener that sent SYN cookies lately (Linux checks only then, too:
        tcp_synq_no_recent_overflow): if it returns one of our cookies, the connection is rebuilt from it."""
        cookies = self.syn_cookies
        if cookies is None:
            return False
        listener = self.listeners.get((packet.dst, seg.dst_port)) or self.listeners.get((None, seg.dst_port))
        if listener is None or now - listener.overflowed_at > 2 * COOKIE_PERIOD:
            return False
        local, remote = packet.dst, packet.src
        mss = cookies.check(local, seg.dst_port, remote, seg.src_port, seg.seq, seg.ack, now)
        if mss is None:
            return False
        if not self._has_room(listener):
            return True  # dropped: the cookie stays good, and the client's next segment may find room
        config = listener.config or self.config_for(local)
        options = TcpOptions(mss=min(mss, config.mss))
        timestamps = seg.options.timestamps
        if timestamps is not None and config.timestamps:
            window_scale, sack = options_from_timestamp(timestamps[1])
            options = TcpOptions(mss=options.mss, window_scale=window_scale, sack_permitted=sack, timestamps=timestamps)
        conn = self._register(local, seg.dst_port, remote, seg.src_port, seq_add(seg.ack, -1), config)
        self._count_for(listener, conn)
        conn.resume_from_cookie(seq_add(seg.seq, -1), options, now)
        conn.receive_segment(seg, now)
        return True

    def _has_room(self, listener: Listener) -> bool:
        """Whether a new connection from ``listener`` fits under the host's and the listener's limits; if not,
        the drop is counted."""
        if len(self.connections) >= self.max_connections:
            self.drops["connection_limit"] += 1
            return False
        if listener.max_connections is not None and listener.open >= listener.max_connections:
            self.drops["listener_connection_limit"] += 1
            return False
        return True

    def _count_for(self, listener: Listener, conn: Connection) -> None:
        if listener.max_connections is not None:
            listener.open += 1
            self._listener_of[conn] = listener

    def _send_cookie(self, listener: Listener, packet: IpPacket, seg: TcpSegment, now: float) -> None:
        """RFC 4987 §3.6: the backlog is full, so answer with a SYN,ACK whose ISN is a cookie and keep nothing."""
        listener.overflowed_at = now
        local, remote = packet.dst, packet.src
        config = listener.config or self.config_for(local)
        # RFC 9293 §3.7.1 (MUST-15): a SYN that names no MSS gets the default, 536 (IPv4) or 1220 (IPv6).
        offered = seg.options.mss or (536 if len(local) == 4 else 1220)
        cookie = self.syn_cookies.make(
            local, seg.dst_port, remote, seg.src_port, seg.seq, min(offered, config.mss), now
        )
        options = TcpOptions(mss=config.mss)
        if seg.options.timestamps is not None and config.timestamps:
            # The client's timestamps carry window scaling and SACK through the cookie (syncookie.py).
            scale = seg.options.window_scale if config.window_scaling else None
            sack = seg.options.sack_permitted and config.sack
            clock = Timestamps(cookie).value(now)  # the TSval clock of the connection this cookie would become
            options = TcpOptions(
                mss=config.mss,
                window_scale=config.receive_window_scale if scale is not None else None,
                sack_permitted=sack,
                timestamps=(timestamp_with_options(clock, scale, sack), seg.options.timestamps[0]),
            )
        reply = TcpSegment(
            src_port=seg.dst_port,
            dst_port=seg.src_port,
            seq=cookie,
            ack=seq_add(seg.seq, 1),
            flags=SYN | ACK,
            window=min(config.receive_buffer, 0xFFFF),
            payload=b"",
            options=options,
        )
        self.send_segment(local, remote, reply)

    def _foreign_ack_taken(self, conn: Connection, packet: IpPacket, seg: TcpSegment, now: float) -> bool:
        return (
            self.foreign_ack is not None
            and seg.flags & (ACK | RST) == ACK
            and not conn.tx.ack_acceptable(seg.ack)
            and self.foreign_ack(self, packet, seg, now)
        )

    def _reopens_time_wait(self, conn: Connection, seg: TcpSegment) -> bool:
        """RFC 9293 §3.6.1 (MAY-2), RFC 6191: a new SYN may reopen a connection in TIME-WAIT if its sequence
        number is beyond anything of the old incarnation (and a listener will take it)."""
        return (
            seg.flags & (SYN | ACK | RST) == SYN
            and seq_lt(conn.rx.rcv_nxt, seg.seq)
            and ((conn.local_addr, conn.local_port) in self.listeners or (None, conn.local_port) in self.listeners)
        )

    def _accept_syn(
        self, listener: Listener, packet: IpPacket, seg: TcpSegment, now: float, previous: Connection | None
    ) -> None:
        if not self._has_room(listener):
            return
        if listener.pending >= listener.backlog:
            self.drops["listen_overflow"] += 1
            if self.syn_cookies is not None:
                self._send_cookie(listener, packet, seg, now)
            # else like Linux without SYN cookies: drop the SYN; the client retries after its RTO.
            return
        local, remote = packet.dst, packet.src
        iss = self.isn_source(local, seg.dst_port, remote, seg.src_port, now)
        if previous is not None and not seq_lt(previous.tx.snd_nxt, iss):
            # RFC 9293 §3.6.1: the new ISN must be "larger than the largest sequence number it used on the
            # previous connection incarnation".
            iss = seq_add(previous.tx.snd_nxt, 1 << 16)
        conn = self._register(local, seg.dst_port, remote, seg.src_port, iss, listener.config or self.config_for(local))
        self._count_for(listener, conn)
        conn.listen()
        listener.pending += 1
        self._embryonic[conn] = listener
        conn.receive_segment(seg, now)

    def packets_to_send(self, now: float) -> list[bytes]:
        """Everything due to go out now, as IP datagrams; call after any input, timer or application call."""
        out = self._raw_out
        self._raw_out = []
        dirty = self._dirty
        self._dirty = {}
        ttl = self.ttl
        for conn in dirty:
            segments = conn.segments_to_send(now)
            if segments:
                local, remote, tos = conn.local_addr, conn.remote_addr, conn.config.dscp << 2
                mss = conn.tx.eff_mss
                for seg in segments:
                    if len(seg.payload) > mss:  # joined for the device to cut at the MSS (stack/wire/tso.py)
                        out.append(build_tso_packet(seg, local, remote, mss, ttl=ttl, tos=tos))
                    else:
                        out.append(build_tcp_packet(seg, local, remote, ttl=ttl, tos=tos))
            if conn.state is State.CLOSED:
                self._forget(conn)
            else:
                self._arm(conn)
        self.packets_out += len(out)
        return out

    # ---------------------------------------------------------------------------------------------------------
    # Timers: a heap of (deadline, tiebreak, connection); entries whose deadline moved are skipped lazily.

    def get_timer(self) -> float | None:
        for conn in self._dirty:
            self._arm(conn)
        timers, armed = self._timers, self._armed
        while timers:
            deadline, _, conn = timers[0]
            if armed.get(conn) == deadline:
                return deadline
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> None:
        timers, armed = self._timers, self._armed
        while timers and timers[0][0] <= now:
            deadline, _, conn = heapq.heappop(timers)
            if armed.get(conn) != deadline:
                continue
            del armed[conn]
            conn.handle_timer(now)
            self._dirty[conn] = None

    def _arm(self, conn: Connection) -> None:
        deadline = conn.get_timer()
        if deadline is None:
            self._armed.pop(conn, None)
            return
        if self._armed.get(conn) == deadline:
            return
        self._armed[conn] = deadline
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, conn))
        if len(self._timers) > 4 * len(self._armed) + 1024:
            # Drop the stale entries so the heap stays proportional to the live timers.
            self._timers = [(d, s, c) for d, s, c in self._timers if self._armed.get(c) == d]
            heapq.heapify(self._timers)

    # ---------------------------------------------------------------------------------------------------------
    # Connection table

    def _register(
        self, local: Address, local_port: int, remote: Address, remote_port: int, iss: int, config: TcpConfig
    ) -> Connection:
        conn = Connection(local, local_port, remote, remote_port, iss, config)
        conn.on_change = self._on_change
        conn.tso_limit = self.tso_limit
        self.connections[(local, local_port, remote, remote_port)] = conn
        self._dirty[conn] = None
        if self.on_open is not None:
            self.on_open(conn)
        return conn

    def _forget(self, conn: Connection) -> None:
        key = (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
            self.retransmits_of_closed += conn.tx.retransmits
            if self.on_close is not None:
                self.on_close(conn)
        self._armed.pop(conn, None)
        limited = self._listener_of.pop(conn, None)
        if limited is not None:
            limited.open -= 1
        listener = self._embryonic.get(conn)
        if listener is not None:
            listener.pending -= 1
            self._embryonic[conn] = None  # keep it until its events are drained, so they stay hidden

    def _on_change(self, conn: Connection) -> None:
        self._dirty[conn] = None
        if conn.has_events and conn not in self._event_ready:
            self._event_ready.add(conn)
            self._event_queue.append(conn)
