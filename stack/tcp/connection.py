"""One TCP connection, sans-I/O (RFC 9293).

Segments and ``now`` go in through ``receive_segment`` and ``handle_timer``; segments come out of
``segments_to_send``, events out of ``next_event``, the next deadline out of ``get_timer``. Nothing here reads a
clock, draws a random number or touches a socket. Peer input never raises: what TCP says to drop is dropped.
"""

from collections.abc import Callable

import structlog

from ..seq import seq_add, seq_lt, seq_sub
from ..wire import ACK, FIN, NO_OPTIONS, PSH, RST, SYN, URG, TcpOptions, TcpSegment
from .config import DEFAULT_SEND_MSS_V4, DEFAULT_SEND_MSS_V6, TcpConfig
from .congestion import make_congestion_control
from .errors import LocalProtocolError
from .events import (
    Closed,
    CloseReason,
    DataReceived,
    Established,
    Event,
    PeerClosed,
    Reset,
    SendSpace,
    SendWatermark,
    SoftError,
    UrgentData,
)
from .icmp import IcmpError, IcmpKind
from .info import TcpInfo, connection_info
from .keepalive import Keepalive, KeepaliveSettings, RateLimit
from .receiver import Receiver
from .reset import reset_for
from .sender import Sender
from .state import CAN_RECEIVE, CAN_SEND, State
from .timestamps import OPTION_SPACE as TIMESTAMP_OPTION_SPACE
from .timestamps import Timestamps

_log = structlog.get_logger("stack.tcp")

# States whose output may carry data or a FIN (and their retransmissions).
_SENDS_DATA = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})
_HANDSHAKE = frozenset({State.SYN_SENT, State.SYN_RECEIVED})
_KEEPALIVE = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
_DATA = object()  # event-queue marker: "buffered data is readable here", turned into DataReceived on demand
# Events about sending, or only informative: they do not wait behind unread data while reading is paused, or an
# application blocked on drain() (waiting for SendSpace) would never read again, and both ends would wait forever.
_NOT_AFTER_DATA = (SendSpace, SendWatermark, SoftError)


class Connection:
    """A TCB and the rules that move it. Create one per 4-tuple; ``connect`` or ``listen`` opens it."""

    # Slots, not a __dict__: a host may hold 100,000 idle connections, and a dict costs about 1.3 KB of each.
    __slots__ = (
        "_control",
        "_data_marked",
        "_events",
        "_fin_requested",
        "_keepalive_due",
        "_orphaned",
        "_probe_due",
        "_reading_paused",
        "_send_blocked",
        "_watermark",
        "challenge_acks",
        "close_reason",
        "config",
        "fin_wait_2_until",
        "keepalive",
        "local_addr",
        "local_port",
        "on_change",
        "passive",
        "remote_addr",
        "remote_port",
        "rx",
        "segments_received",
        "segments_sent",
        "soft_error",
        "state",
        "time_wait_until",
        "ts",
        "tso_limit",
        "tx",
        "wscale_ok",
    )

    def __init__(
        self,
        local_addr: bytes,
        local_port: int,
        remote_addr: bytes,
        remote_port: int,
        iss: int,
        config: TcpConfig | None = None,
    ) -> None:
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.config = config = config or TcpConfig()
        self.state = State.CLOSED
        self.passive = False
        self.close_reason: CloseReason | None = None
        default_mss = DEFAULT_SEND_MSS_V4 if len(remote_addr) == 4 else DEFAULT_SEND_MSS_V6
        self.tx = Sender(iss, config, min(default_mss, config.mss))
        self.rx = Receiver(config)
        self.time_wait_until: float | None = None
        self.fin_wait_2_until: float | None = None
        self._orphaned = False  # the application closed fully: it reads nothing more
        self._fin_requested = False  # shutdown asked for before the handshake finished
        self._send_blocked = False
        self._probe_due = False
        self._keepalive_due = False
        self._watermark: int | None = None
        self.keepalive = Keepalive(config.keepalive, 0.0)
        self.challenge_acks = RateLimit(config.challenge_acks_per_second)
        self._reading_paused = False
        self._control: list[TcpSegment] = []  # RSTs decided while processing input, sent first
        self._events: list = []  # few at a time; a deque's first block alone would cost 600 bytes
        self._data_marked = False
        self.on_change: Callable[[Connection], None] | None = None  # set by the Host
        self.segments_received = 0
        self.segments_sent = 0
        self.wscale_ok = False  # RFC 7323 §2: agreed in the SYN exchange
        self.ts = Timestamps(iss)
        self.soft_error: str | None = None  # the latest ICMP soft error (RFC 9293 SHLD-25)
        # Payload bytes one transmission may carry when the device has segmentation offload (set by the Host);
        # 0: one segment per MSS.
        self.tso_limit = 0

    def __repr__(self) -> str:
        return f"<Connection :{self.local_port} -> :{self.remote_port} {self.state}>"

    # ---------------------------------------------------------------------------------------------------------
    # Application calls (RFC 9293 §3.10.1 - §3.10.6)

    def connect(self, now: float) -> None:
        """Active OPEN: send a SYN (RFC 9293 §3.10.1)."""
        if self.state is not State.CLOSED or self.close_reason is not None:
            raise LocalProtocolError(f"connect() on a connection in {self.state}: use a new Connection")
        self._set_state(State.SYN_SENT, now)
        self._changed()

    def listen(self) -> None:
        """Passive OPEN: wait for a SYN (RFC 9293 §3.10.1)."""
        if self.state is not State.CLOSED or self.close_reason is not None:
            raise LocalProtocolError(f"listen() on a connection in {self.state}: use a new Connection")
        self.passive = True
        self.state = State.LISTEN

    def send(self, data: bytes | memoryview, urgent: bool = False) -> int:
        """Queue ``data``; return how many bytes fit in the send buffer (a ``SendSpace`` event follows a short
        count once room frees up). ``urgent`` marks the bytes taken as urgent data (RFC 9293 §3.8.5; SHLD-13
        says new applications should not use it)."""
        if self.state not in CAN_SEND or self.tx.fin_queued or self._fin_requested:
            if self.state in (State.CLOSED, State.LISTEN):
                raise LocalProtocolError("send() on a connection that is not open: connect first")
            raise LocalProtocolError("send() after shutdown_write() or close(): the connection is closing")
        taken = self.tx.queue(data)
        if urgent and taken:
            # RFC 9293 (MUST-62): "The urgent pointer MUST point to the sequence number of the octet following
            # the urgent data."
            self.tx.snd_up = self.tx.data_end
        if taken < len(data):
            self._send_blocked = True
        if taken:
            self._changed()
        return taken

    def shutdown_write(self, now: float) -> None:
        """RFC 9293 CLOSE: "I have no more to send". A FIN follows the queued data; receiving goes on."""
        state = self.state
        if state in _HANDSHAKE:
            # RFC 9293 §3.10.4 SYN-RECEIVED: "queue for processing after entering ESTABLISHED state".
            self._fin_requested = True
        elif state is State.ESTABLISHED:
            self.tx.fin_queued = True
            self._set_state(State.FIN_WAIT_1, now)
        elif state is State.CLOSE_WAIT:
            self.tx.fin_queued = True
            self._set_state(State.LAST_ACK, now)
        elif state is State.LISTEN:
            self._terminate(CloseReason.NORMAL, now)
        self._changed()

    def close(self, now: float) -> None:
        """Close both directions, like ``close(2)`` on a socket: send a FIN after the queued data, and reset the
        connection if data is still unread or arrives later.

        RFC 1122 §4.2.2.13 (RFC 9293 SHLD-?): "If such a host issues a CLOSE call while received data is still
        pending in TCP, or if new data is received after CLOSE is called, its TCP SHOULD send a RST to show
        that data was lost."
        """
        if self.state is State.CLOSED:
            return
        if self.rx.buf:
            self.abort(now)
            return
        self._orphaned = True
        if self.state is State.SYN_SENT:
            # RFC 9293 §3.10.4 SYN-SENT: "Delete the TCB".
            self._terminate(CloseReason.ABORTED, now)
            return
        self.shutdown_write(now)
        if self.state is State.FIN_WAIT_2:
            self.fin_wait_2_until = now + self.config.fin_wait_2_timeout

    def abort(self, now: float) -> None:
        """RFC 9293 §3.10.5 ABORT: reset the peer where it knows of us, and forget the connection."""
        state = self.state
        if state is State.CLOSED:
            return
        if state in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            # "Send a reset segment: <SEQ=SND.NXT><CTL=RST>"; like Linux we add the ACK.
            self._queue_control(self.tx.snd_nxt, RST | ACK, self.rx.rcv_nxt)
        self._terminate(CloseReason.ABORTED, now)

    def discard(self, now: float) -> None:
        """Forget a half-open passive connection without a word (no RST): the anycast node does this when the
        client completed its handshake with another node, whose bytes its ACK acknowledges."""
        if self.state is State.SYN_RECEIVED:
            self._terminate(CloseReason.ABORTED, now)

    def expire_time_wait(self, now: float) -> None:
        """End TIME-WAIT early because a new incarnation of this 4-tuple is opening (RFC 9293 §3.6.1)."""
        if self.state is State.TIME_WAIT:
            self._terminate(CloseReason.NORMAL, now)

    def set_send_limit(self, seq: int | None) -> None:
        """Send no new data or FIN at or beyond sequence number ``seq`` (None lifts the limit). Retransmissions
        are unaffected. The anycast node fences a connection here until its peers know who owns it."""
        self.tx.send_limit = seq
        self._changed()

    def set_send_watermark(self, seq: int | None) -> None:
        """Emit ``SendWatermark(seq)`` once SND.NXT reaches ``seq`` (None clears the mark)."""
        self._watermark = seq
        self._changed()

    def set_keepalive(self, settings: KeepaliveSettings, now: float) -> None:
        """RFC 9293 (MUST-24): switch keep-alives on or off, or retune them, for this connection."""
        self.keepalive.settings = settings
        self.keepalive.heard(now)
        self._changed()

    def pause_reading(self) -> None:
        """Stop handing data to the application; the receive buffer fills and our window closes."""
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
        self._changed()

    def next_event(self) -> Event | None:
        events = self._events
        while events:
            event = events[0]
            if event is not _DATA:
                return events.pop(0)
            if self._reading_paused:
                return self._next_not_after_data()
            events.pop(0)
            self._data_marked = False
            if not self.rx.buf:
                continue
            data = self.rx.take()
            if self.state in CAN_RECEIVE and self.rx.window_opened_enough():
                self.rx.ack_now = True  # the window update the peer is waiting for
                self._changed()
            return DataReceived(data)
        return None

    def on_icmp_error(self, error: IcmpError, seq: int, now: float) -> bool:
        """RFC 9293 §3.9.2.2 (MUST-54): an ICMP error quoting one of our segments, with sequence number ``seq``.
        Returns whether it was taken (RFC 5927 §4.1: only if ``seq`` is one we sent and is not yet
        acknowledged; anything else may be forged, and is counted and ignored)."""
        tx, state = self.tx, self.state
        if state in _HANDSHAKE:
            valid = seq == tx.iss
        elif state is State.CLOSED or state is State.LISTEN:
            valid = False
        else:
            valid = not seq_lt(seq, tx.snd_una) and seq_lt(seq, tx.snd_nxt)
        if not valid:
            return False  # the host counts it (drops["icmp_out_of_window"])
        if error.kind is IcmpKind.PATH_MTU:
            if error.mtu is not None:
                ipv4 = len(self.remote_addr) == 4
                # RFC 8201 §5: no IPv6 path MTU below 1280; for IPv4 Linux's floor (ip_rt_min_pmtu, 552) keeps a
                # forged message from shrinking segments to nothing.
                mtu = max(error.mtu, 552 if ipv4 else 1280)
                options = TIMESTAMP_OPTION_SPACE if self.ts.enabled else 0
                tx.lower_mss(mtu - (20 if ipv4 else 40) - 20 - options)
        elif error.kind is IcmpKind.HARD and state in _HANDSHAKE:
            # RFC 5927 §5.2: hard errors abort only a connection still being set up; in synchronized states they
            # are soft errors, as in Linux.
            port = "port" in error.description
            self._terminate(CloseReason.REFUSED if port else CloseReason.UNREACHABLE, now)
        elif error.kind is not IcmpKind.IGNORE:
            # RFC 9293 (MUST-56): soft errors never abort; (MUST-47, SHLD-25): the application hears of them.
            self.soft_error = error.description
            self._emit(SoftError(error.description))
        self._changed()
        return True

    def urgent_remaining(self) -> int:
        """RFC 9293 (MUST-33): how many bytes of the peer's urgent data the application has not yet taken."""
        return max(self.rx.rcv_up - self.rx.taken, 0)

    def info(self) -> TcpInfo:
        """Statistics for operators, like Linux's TCP_INFO."""
        return connection_info(self)

    def _next_not_after_data(self) -> Event | None:
        """While reading is paused behind unread data: the first event that does not wait for it."""
        events = self._events
        for i, event in enumerate(events):
            if type(event) in _NOT_AFTER_DATA:
                return events.pop(i)
        return None

    @property
    def has_events(self) -> bool:
        events = self._events
        if not events:
            return False
        if self._reading_paused and events[0] is _DATA:
            return any(type(event) in _NOT_AFTER_DATA for event in events)
        return True

    # ---------------------------------------------------------------------------------------------------------
    # Timers

    def get_timer(self) -> float | None:
        deadline = None
        for t in (
            self.tx.retransmit_at,
            self.tx.tlp_at,
            self.tx.rack_at,
            self.rx.delayed_ack_at,
            self.tx.persist_at,
            self.time_wait_until,
            self.fin_wait_2_until,
            self.keepalive.deadline() if self.state in _KEEPALIVE else None,
        ):
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        return deadline

    def handle_timer(self, now: float) -> None:
        if self.state is State.CLOSED:
            return
        if self.time_wait_until is not None and now >= self.time_wait_until:
            self._terminate(CloseReason.NORMAL, now)  # RFC 9293 §3.10.8: "If the time-wait timeout expires"
            return
        if self.fin_wait_2_until is not None and now >= self.fin_wait_2_until:
            self._terminate(CloseReason.NORMAL, now)
            return
        tx, rx = self.tx, self.rx
        if rx.delayed_ack_at is not None and now >= rx.delayed_ack_at:
            rx.delayed_ack_at = None
            rx.ack_now = True
        if tx.retransmit_at is not None and now >= tx.retransmit_at:
            self._on_retransmit_timeout(now)
            if self.state is State.CLOSED:
                return
        if tx.rack_at is not None and now >= tx.rack_at:
            tx.on_rack_timeout(now)
        if tx.tlp_at is not None and now >= tx.tlp_at:
            tx.on_tlp_timeout(now)
        if tx.persist_at is not None and now >= tx.persist_at:
            tx.on_persist_timeout()
            self._probe_due = True
        if self.state in _KEEPALIVE:
            self._on_keepalive_timer(now)

    def _on_keepalive_timer(self, now: float) -> None:
        deadline = self.keepalive.deadline()
        if deadline is None or now < deadline:
            return
        if self.tx.outstanding:
            # RFC 9293 (MUST-26): "only ... when no sent data is outstanding"; the retransmission timer is
            # watching the peer meanwhile.
            self.keepalive.heard(now)
        elif self.keepalive.expired():
            self._terminate(CloseReason.TIMED_OUT, now)
        else:
            self._keepalive_due = True

    def _on_retransmit_timeout(self, now: float) -> None:
        tx = self.tx
        handshake = self.state in _HANDSHAKE
        if not handshake and tx.outstanding == 0:
            tx.retransmit_at = None
            return
        # RFC 9293 §3.8.3 (MUST-20, MUST-23): give up at R2, "measured in time units"; R2 for a SYN is longer;
        # a user timeout, when set, stands in for R2 on data.
        limit = self.config.syn_r2 if handshake else (self.config.user_timeout or self.config.r2)
        if tx.rtx_since is not None and now - tx.rtx_since >= limit:
            self._terminate(CloseReason.TIMED_OUT, now)
            return
        tx.on_retransmit_timeout(now, handshake)
        if tx.timeouts == self.config.r1:
            _log.debug("tcp.r1_reached", conn=self, timeouts=tx.timeouts)

    # ---------------------------------------------------------------------------------------------------------
    # Output

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        out = self._control
        self._control = []
        state = self.state
        if state is State.CLOSED or state is State.LISTEN:
            return out
        tx, rx = self.tx, self.rx
        if state in _HANDSHAKE:
            if tx.syn_due:
                out.append(self._syn_segment(state is State.SYN_RECEIVED, now))
                tx.syn_sent(now)
        else:
            if state in _SENDS_DATA:
                if self.tso_limit:
                    self._data_super_segments(now, out)
                else:
                    while (seg := self._next_data_segment(now)) is not None:
                        out.append(seg)
                if self._probe_due:
                    self._probe_due = False
                    if tx.snd_wnd == 0:
                        # DEVIATION: RFC 9293 §3.8.6.1 probes with one octet of new data; Linux probes with an
                        # old sequence number and no data, which every receiver must answer with an ACK and
                        # which cannot overrun a zero window. We do as Linux does.
                        out.append(self._segment(seq_add(tx.snd_una, -1), ACK, now))
                        tx.arm_persist(now)
                    elif (seg := self._next_data_segment(now, force=True)) is not None:
                        out.append(seg)  # RFC 9293 §3.8.6.2.1: the SWS override once the timer runs out
        if self._keepalive_due:
            self._keepalive_due = False
            if state in _KEEPALIVE:
                out.append(self._segment(seq_add(tx.snd_una, -1), ACK, now))  # RFC 1122 §4.2.3.6 probe
        if rx.ack_now:
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, where SND.NXT is the highest we have sent: after a timeout
            # pulled snd_nxt back, an ACK carrying it would fall before the peer's RCV.NXT, be judged
            # unacceptable, lose its acknowledgment and draw an ACK back, forever (Linux: tcp_acceptable_seq).
            out.append(self._segment(tx.snd_nxt, ACK, now))
        self.segments_sent += len(out)
        mark = self._watermark
        if mark is not None and out and not seq_lt(tx.snd_nxt, mark):
            self._watermark = None
            self._emit(SendWatermark(mark))
        return out

    def _syn_segment(self, with_ack: bool, now: float) -> TcpSegment:
        """Our SYN offers what the configuration allows; our SYN,ACK answers only what the peer offered
        (RFC 7323 §2.2, §3.2; RFC 2018 §2). RFC 9293 §3.7.1 (MUST-14): an MSS option in every SYN."""
        config, rx = self.config, self.rx
        if with_ack:
            wscale = rx.wscale if self.wscale_ok else None
            sack, ts = rx.sack_ok, self.ts.enabled
        else:
            wscale = config.receive_window_scale if config.window_scaling else None
            sack, ts = config.sack, config.timestamps
        options = TcpOptions(
            mss=config.mss,
            window_scale=wscale,
            sack_permitted=sack,
            timestamps=(self.ts.value(now), self.ts.recent if with_ack else 0) if ts else None,
        )
        ack, flags = (rx.rcv_nxt, SYN | ACK) if with_ack else (0, SYN)
        if with_ack:
            rx.on_ack_sent()
            self.ts.last_ack_sent = ack
        return TcpSegment(
            self.local_port, self.remote_port, self.tx.iss, ack, flags, rx.advertise(syn=True), b"", options
        )

    def _next_data_segment(self, now: float, force: bool = False) -> TcpSegment | None:
        item = self.tx.next_segment(now, force)
        if item is None:
            return None
        start, end, fin, _ = item
        return self._data_segment(start, end, fin, now)

    def _data_super_segments(self, now: float, out: list[TcpSegment]) -> None:
        """What ``_next_data_segment`` would send, with runs of adjacent full-sized segments joined into one of up
        to ``tso_limit`` payload bytes, for a device with segmentation offload to cut apart again at the MSS
        (stack/wire/tso.py). The sender still records, SACKs and retransmits each MSS-sized piece on its own."""
        tx, limit = self.tx, self.tso_limit
        while (run := tx.next_run(now, limit)) is not None:  # the bulk of a transfer: new data, nothing lost
            out.append(self._data_segment(run[0], run[1], False, now))
        mss = tx.eff_mss
        run_start = run_end = -1
        run_fin = False
        whole = True  # every piece of the run so far is MSS-sized, so one more can follow
        while (item := tx.next_segment(now)) is not None:
            start, end, fin, _ = item
            if not (start == run_end and whole and end - run_start <= limit and tx.snd_up <= start):
                if run_start >= 0:
                    out.append(self._data_segment(run_start, run_end, run_fin, now))
                run_start = start
            run_end, run_fin, whole = end, fin, end - start == mss and not fin
        if run_start >= 0:
            out.append(self._data_segment(run_start, run_end, run_fin, now))

    def _data_segment(self, start: int, end: int, fin: bool, now: float) -> TcpSegment:
        tx = self.tx
        data_end = tx.data_end
        stop = min(end, data_end)
        payload = tx.buf.read(start - tx.buf_off, stop - tx.buf_off)
        flags = ACK
        if payload and stop == data_end:
            flags = ACK | PSH  # RFC 9293 §3.9.1 (MUST-60, MUST-61): PSH on the last of what was queued
        if fin:
            flags |= FIN
        urgent = 0
        if tx.snd_up > start:
            # RFC 9293 §3.8.5: every segment before the end of the urgent data says where it ends; a pointer
            # beyond 16 bits is capped and later segments point closer (MUST-31).
            flags |= URG
            urgent = min(tx.snd_up - start, 0xFFFF)
        return self._segment(tx.seq_at(start), flags, now, payload, urgent)

    def _segment(self, seq: int, flags: int, now: float, payload: bytes = b"", urgent: int = 0) -> TcpSegment:
        """A synchronized-state segment: it carries ACK, our window, and the agreed options."""
        rx = self.rx
        options = NO_OPTIONS
        ts = self.ts
        if ts.enabled or rx.sack_ok:
            sack = rx.sack_blocks(3 if ts.enabled else 4) if rx.sack_ok and (rx.dsack or rx.ooo.bytes_held) else ()
            if ts.enabled or sack:
                timestamps = ts.option(now) if ts.enabled else None
                options = TcpOptions(timestamps=timestamps, sack_blocks=sack)
        rx.on_ack_sent()
        ts.last_ack_sent = rx.rcv_nxt
        return TcpSegment(
            self.local_port, self.remote_port, seq, rx.rcv_nxt, flags, rx.advertise(), payload, options, urgent
        )

    def _queue_control(self, seq: int, flags: int, ack: int = 0) -> None:
        self._control.append(TcpSegment(self.local_port, self.remote_port, seq, ack, flags, 0))

    # ---------------------------------------------------------------------------------------------------------
    # Input: RFC 9293 §3.10.7

    def receive_segment(self, seg: TcpSegment, now: float) -> None:
        self.segments_received += 1
        self.keepalive.heard(now)
        state = self.state
        if state is State.CLOSED:
            return
        if state is State.LISTEN:
            self._receive_in_listen(seg, now)
            return
        if state is State.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
            return
        flags = seg.flags
        if self.ts.enabled and self.ts.paws_rejects(seg, now):
            self.rx.ack_now = True  # RFC 7323 §5.3 R1: acknowledge, and drop
            return
        if not self._check_sequence(seg, now):
            return
        if self.ts.enabled:
            self.ts.update_recent(seg, now)
        if flags & RST:
            if state is State.TIME_WAIT and self.config.rfc1337:
                return  # RFC 1337 §3 (F1): "Ignore RST segments in TIME-WAIT state", as FreeBSD does
            self._check_rst(seg, now)
            return
        if flags & SYN:
            self._check_syn(seg, now)
            return
        # RFC 9293 §3.10.7.4 fifth: "if the ACK bit is off, drop the segment and return".
        if not flags & ACK:
            return
        if not self._check_ack(seg, now):
            return
        if flags & URG and self.state in CAN_RECEIVE:
            self._receive_urgent(seg)
        if seg.payload or flags & FIN:
            self._receive_text(seg.seq, seg.payload, bool(flags & FIN), now)

    def _receive_urgent(self, seg: TcpSegment) -> None:
        """RFC 9293 §3.10.7.4 sixth: "If the URG bit is set, RCV.UP <- max(RCV.UP,SEG.UP), and signal the user
        that the remote side has urgent data if the urgent pointer (RCV.UP) is in advance of the data
        consumed" (MUST-30..32; any length, MUST-31: the pointer may lie beyond this segment)."""
        rx = self.rx
        end = rx.rcv_offset + seq_sub(seq_add(seg.seq, seg.urgent), rx.rcv_nxt)
        if end > rx.rcv_up and end > rx.taken:
            rx.rcv_up = end
            self._events.insert(0, UrgentData(end))
            self._changed()

    def resume_from_cookie(self, irs: int, options: TcpOptions, now: float) -> None:
        """RFC 4987 §3.6: this passive connection is rebuilt from a SYN cookie's returning ACK, which the caller
        feeds next. The handshake stands as if our SYN,ACK (sent without state, its sequence number the cookie,
        which is this connection's ISS) had gone out from here, with ``options`` as the SYN's: what the cookie
        and its timestamp kept (stack/tcp/syncookie.py)."""
        self.listen()
        self.rx.start(irs)
        self._negotiate(options, now)
        self._set_state(State.SYN_RECEIVED, now)
        self.tx.syn_sent(now)
        self.tx.timed_end = None  # when the SYN,ACK left is unknown: no RTT sample from it

    def _receive_in_listen(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.2."""
        flags = seg.flags
        # "An incoming RST segment could not be valid since it could not have been sent in response to
        # anything sent by this incarnation of the connection. An incoming RST should be ignored."
        if flags & RST:
            return
        # "Any acknowledgment is bad if it arrives on a connection still in the LISTEN state. An acceptable
        # reset segment should be formed for any arriving ACK-bearing segment."
        if flags & ACK:
            self._control.append(reset_for(seg))
            return
        if flags & SYN:
            self.rx.start(seg.seq)
            self._negotiate(seg.options, now)
            # "ISS should be selected and a SYN segment sent of the form: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>"
            # (the ISS was chosen when the host created this TCB). Data on the SYN is not acknowledged, so the
            # peer sends it again once the handshake is done.
            self._set_state(State.SYN_RECEIVED, now)
        # "Any other control or text-bearing segment (not containing SYN) must have an ACK and thus would have
        # been discarded by the ACK processing": drop it.

    def _receive_in_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        tx, rx = self.tx, self.rx
        flags = seg.flags
        ack_ok = False
        if flags & ACK:
            # "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the RST bit is set, if so drop the
            # segment and return) <SEQ=SEG.ACK><CTL=RST>".
            if not tx.ack_acceptable(seg.ack):
                if not flags & RST:
                    self._control.append(reset_for(seg))
                return
            ack_ok = True
        if flags & RST:
            # RFC 5961 §3.2 as adopted by RFC 9293: a RST in SYN-SENT is valid only if it acknowledges our SYN.
            if ack_ok:
                self._terminate(CloseReason.REFUSED, now)
            return
        if not flags & SYN:
            return  # "fifth, if neither of the SYN or RST bits is set, then drop the segment and return"
        rx.start(seg.seq)
        self._negotiate(seg.options, now)
        if ack_ok:
            tx.on_ack(seg.ack, (), now, self.ts.rtt(seg, now), False)
        if seq_lt(tx.iss, tx.snd_una):
            # "If SND.UNA > ISS (our SYN has been ACKed), change the connection state to ESTABLISHED, form an ACK
            # segment <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and send it."
            tx.set_window(seg.seq, seg.ack, seg.window)
            rx.ack_now = True
            self._set_state(State.ESTABLISHED, now)
            if seg.payload or flags & FIN:
                self._receive_text(seq_add(seg.seq, 1), seg.payload, bool(flags & FIN), now)
        else:
            # Simultaneous open: "enter SYN-RECEIVED, form a SYN,ACK segment <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>".
            self._set_state(State.SYN_RECEIVED, now)

    def _check_sequence(self, seg: TcpSegment, now: float) -> bool:
        """RFC 9293 §3.10.7.4 first: the four-case acceptability test."""
        rx = self.rx
        wnd = rx.window()
        delta = seq_sub(seg.seq, rx.rcv_nxt)
        seg_len = len(seg.payload) + (seg.flags & SYN and 1) + (seg.flags & FIN and 1)
        if seg_len == 0:
            ok = delta == 0 if wnd == 0 else 0 <= delta < wnd
        elif wnd == 0:
            # DEVIATION: the RFC accepts nothing with length in a zero window; Linux (tcp_data_queue) accepts a
            # bare FIN at RCV.NXT, so a sender that closes while we are full does not wait for a window.
            ok = delta == 0 and seg_len == 1 and bool(seg.flags & FIN)
        else:
            end = delta + seg_len - 1
            ok = 0 <= delta < wnd or 0 <= end < wnd
        if ok:
            return True
        # "If an incoming segment is not acceptable, an acknowledgment should be sent in reply (unless the RST
        # bit is set, if so drop the segment and return)".
        if not seg.flags & RST:
            if seg.payload and rx.sack_ok and seq_sub(seq_add(seg.seq, seg_len), rx.rcv_nxt) <= 0:
                # RFC 2883 §4 (example 1): a wholly duplicate segment is reported in a D-SACK block.
                end = rx.rcv_offset + seq_sub(seq_add(seg.seq, len(seg.payload)), rx.rcv_nxt)
                rx.dsack = (end - len(seg.payload), end)
            if self.state is State.SYN_RECEIVED and seg.flags & (SYN | ACK) == SYN and seg.seq == rx.irs:
                self.tx.syn_due = True  # the peer lost our SYN,ACK: send it again, as Linux does
            elif seg.flags & SYN or not seg_len:
                # RFC 5961 §4.2: a SYN, "irrespective of the sequence number", draws a challenge ACK, throttled
                # (§7); so does a pure ACK out of the window (Linux's tcp_oow_rate_limited: such ACKs, not data,
                # are what a blind attacker sprays and what two confused ends would bounce forever).
                self._challenge_ack(now)
            else:
                rx.ack_now = True
                if self.state is State.TIME_WAIT and seg.flags & FIN:
                    # A retransmitted FIN: "Acknowledge it, and restart the 2 MSL timeout."
                    self.time_wait_until = now + 2 * self.config.msl
        return False

    def _check_rst(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.4 second (with RFC 5961 §3.2, MUST-?)."""
        if seg.seq != self.rx.rcv_nxt:
            # "If the RST bit is set and the sequence number does not exactly match the next expected sequence
            # value, yet is within the current receive window, TCP endpoints MUST send an acknowledgment
            # (challenge ACK)".
            self._challenge_ack(now)
            return
        if self.state is State.SYN_RECEIVED:
            # "If this connection was initiated with a passive OPEN (i.e., came from the LISTEN state), then
            # return this connection to LISTEN state ... The user need not be informed. If this connection was
            # initiated with an active OPEN ... the connection was refused".
            self._terminate(CloseReason.RESET if self.passive else CloseReason.REFUSED, now)
            return
        self._terminate(CloseReason.RESET, now)

    def _check_syn(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.4 fourth (RFC 5961 §4): "If the SYN bit is set, irrespective of the sequence number,
        TCP endpoints MUST send a 'challenge ACK'"; in SYN-RECEIVED after a passive open, return to LISTEN."""
        if self.state is State.SYN_RECEIVED and self.passive:
            self._terminate(CloseReason.RESET, now)
            return
        self._challenge_ack(now)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §7: challenge ACKs are throttled, so a blind attacker cannot use us as an ACK amplifier."""
        if self.challenge_acks.allow(now):
            self.rx.ack_now = True

    def _check_ack(self, seg: TcpSegment, now: float) -> bool:
        """RFC 9293 §3.10.7.4 fifth. Returns whether processing goes on to the text."""
        tx = self.tx
        ack = seg.ack
        state = self.state
        if state is State.SYN_RECEIVED:
            if not tx.ack_acceptable(ack):
                # "If the segment acknowledgment is not acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST>"
                self._control.append(reset_for(seg))
                return False
            # "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state and continue processing with the
            # variables below set to: SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ, SND.WL2 <- SEG.ACK"
            tx.on_ack(ack, (), now, self.ts.rtt(seg, now), False)
            tx.set_window(seg.seq, ack, seg.window << tx.snd_wscale)
            self._set_state(State.ESTABLISHED, now)
            return True
        if seq_lt(tx.snd_nxt, ack):
            # "If the ACK acks something not yet sent (SEG.ACK > SND.NXT), then send an ACK, drop the segment":
            # throttled like a challenge ACK (RFC 5961 §7), as a forged ACK is the likelier cause (Linux sends none).
            self._challenge_ack(now)
            return False
        if seq_lt(ack, seq_add(tx.snd_una, -tx.max_snd_wnd)):
            # RFC 5961 §5.2 (MUST-?): acceptable only if "(SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT";
            # otherwise "the ACK value is considered unacceptable ... send an ACK" and drop.
            self._challenge_ack(now)
            return False
        if not seq_lt(ack, tx.snd_una):
            window = seg.window << tx.snd_wscale
            # RFC 5681 §2: a duplicate ACK carries no data, no SYN or FIN, the same ACK and the same window.
            duplicate = ack == tx.snd_una and not seg.payload and not seg.flags & FIN and window == tx.snd_wnd
            ts_rtt = self.ts.rtt(seg, now) if ack != tx.snd_una else None
            freed = tx.on_ack(ack, seg.options.sack_blocks, now, ts_rtt, duplicate)
            if freed and self._send_blocked and tx.free_space >= tx.buffer_size // 2:
                self._send_blocked = False
                self._emit(SendSpace())
            tx.update_window(seg.seq, ack, window)
        if state is State.FIN_WAIT_1:
            if tx.fin_acked:
                # "if the FIN segment is now acknowledged, then enter FIN-WAIT-2 and continue processing"
                self._set_state(State.FIN_WAIT_2, now)
                if self._orphaned:
                    self.fin_wait_2_until = now + self.config.fin_wait_2_timeout
        elif state is State.CLOSING:
            # "if the ACK acknowledges our FIN, then enter the TIME-WAIT state; otherwise, ignore the segment"
            if tx.fin_acked:
                self._enter_time_wait(now)
            return False
        elif state is State.TIME_WAIT:
            # "The only thing that can arrive in this state is a retransmission of the remote FIN. Acknowledge it,
            # and restart the 2 MSL timeout." Anything but a bare ACK exactly at RCV.NXT is acknowledged, as
            # Linux does; such a bare ACK is taken silently, or two ends in TIME-WAIT could trade ACKs forever.
            if seg.payload or seg.flags & FIN or seg.seq != self.rx.rcv_nxt:
                self.rx.ack_now = True
                if seg.flags & FIN:
                    self.time_wait_until = now + 2 * self.config.msl
            return False
        elif state is State.LAST_ACK:
            # "The only thing that can arrive in this state is an acknowledgment of our FIN. If our FIN is now
            # acknowledged, delete the TCB, enter the CLOSED state, and return."
            if tx.fin_acked:
                self._terminate(CloseReason.NORMAL, now)
            return False
        return True

    def _receive_text(self, data_seq: int, payload: bytes, fin: bool, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh (text) and eighth (FIN); the sixth (URG) needs nothing: urgent data is
        delivered inline."""
        state = self.state
        rx = self.rx
        if state not in CAN_RECEIVE:
            # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: "This should not occur since a FIN has been received from
            # the remote side. Ignore the segment text." (A FIN here was consumed already.)
            return
        if payload and self._orphaned and seq_sub(seq_add(data_seq, len(payload)), rx.rcv_nxt) > 0:
            # RFC 1122 §4.2.2.13: new data after CLOSE: reset, so the peer knows it was not read.
            self._queue_control(self.tx.snd_nxt, RST | ACK, seq_add(data_seq, len(payload)))
            self._terminate(CloseReason.ABORTED, now)
            return
        had_ack_now = rx.ack_now
        delivered, fin_reached = rx.accept(data_seq, payload, fin)
        if delivered:
            if not self._data_marked:
                self._data_marked = True
                self._emit(_DATA)
            if not rx.ack_now or had_ack_now:
                rx.on_in_order_segment(now, len(payload))
        elif payload and not rx.ack_now:
            rx.ack_now = True  # a duplicate: tell the peer where we are
        if fin_reached:
            self._receive_fin(now)

    def _receive_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth."""
        self.rx.consume_fin()
        self._emit(PeerClosed())
        state = self.state
        if state is State.ESTABLISHED:
            self._set_state(State.CLOSE_WAIT, now)
        elif state is State.FIN_WAIT_1:
            # "If our FIN has been ACKed (perhaps in this segment), then enter TIME-WAIT ... otherwise, enter the
            # CLOSING state."
            if self.tx.fin_acked:
                self._enter_time_wait(now)
            else:
                self._set_state(State.CLOSING, now)
        elif state is State.FIN_WAIT_2:
            self._enter_time_wait(now)

    def _negotiate(self, options: TcpOptions, now: float) -> None:
        """Agree on the extensions from the peer's SYN (or SYN,ACK): each is on only if both sides offered it.

        RFC 7323 §2.2: window scaling "is enabled only if both sides send a Window Scale option in their SYN
        segments"; §3.2 the same for timestamps; RFC 2018 §2 for SACK-permitted.
        """
        config, tx, rx = self.config, self.tx, self.rx
        self.wscale_ok = config.window_scaling and options.window_scale is not None
        rx.wscale = config.receive_window_scale if self.wscale_ok else 0
        tx.snd_wscale = options.window_scale if self.wscale_ok else 0  # clamped to 14 by the wire layer
        self.ts.agree(options.timestamps, config.timestamps, now)
        rx.sack_ok = tx.sack_ok = config.sack and options.sack_permitted
        # RFC 9293 §3.7.1 (MUST-16): Eff.snd.MSS = min(SendMSS, our own limit) - TCP options in every segment.
        if options.mss is not None:
            tx.eff_mss = max(min(options.mss, self.config.mss), 64)
        if self.ts.enabled:
            tx.eff_mss -= TIMESTAMP_OPTION_SPACE
        tx.cc = make_congestion_control(self.config.congestion_control, tx.eff_mss, self.config.initial_window_segments)

    # ---------------------------------------------------------------------------------------------------------
    # State changes and events: the one place that assigns ``state``.

    def _set_state(self, new: State, now: float) -> None:
        old = self.state
        self.state = new
        _log.debug("tcp.state", conn=self, old=old, new=new)  # formatted only if debug logging is on
        if new is State.SYN_SENT or new is State.SYN_RECEIVED:
            self.tx.syn_due = True  # our SYN (or SYN,ACK) goes out next
        if new is State.ESTABLISHED:
            self.tx.on_established()
            if self._fin_requested:
                self._fin_requested = False
                self.tx.fin_queued = True
                self.state = State.FIN_WAIT_1
            self._emit(Established())

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(State.TIME_WAIT, now)
        tx = self.tx
        tx.retransmit_at = tx.persist_at = tx.tlp_at = tx.rack_at = None
        self.fin_wait_2_until = None
        # RFC 9293 §3.10.7.4 (MUST-13): "Start the time-wait timer" for 2 MSL.
        self.time_wait_until = now + 2 * self.config.msl

    def _terminate(self, reason: CloseReason, now: float) -> None:
        """Delete the TCB: cancel every timer, drop the queues, tell the application."""
        if reason in (CloseReason.RESET, CloseReason.REFUSED):
            self.rx.discard()
            self._emit(Reset(refused=reason is CloseReason.REFUSED))
        self._set_state(State.CLOSED, now)
        self.close_reason = reason
        tx, rx = self.tx, self.rx
        tx.retransmit_at = tx.persist_at = tx.tlp_at = tx.rack_at = rx.delayed_ack_at = None
        rx.ack_now = False
        self.time_wait_until = self.fin_wait_2_until = None
        self._probe_due = self._keepalive_due = False
        self._emit(Closed(reason))

    def _emit(self, event: object) -> None:
        self._events.append(event)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
