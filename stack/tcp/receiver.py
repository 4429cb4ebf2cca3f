"""The receiving half of a connection: RCV.NXT, the receive window, reassembly and when to acknowledge.

Data accepted in order waits in ``buf`` until the application takes it; the window we advertise is the room
left, so a slow reader closes the window (RFC 9293 §3.8.6).
"""

from ..seq import SEQ_MASK, seq_add, seq_sub
from .config import MAX_UNSCALED_WINDOW, TcpConfig
from .reassembly import Reassembler

# RFC 2018 §3: at most 4 SACK blocks fit in the option space, 3 beside the timestamps option.
MAX_SACK_BLOCKS = 4


class Receiver:
    __slots__ = (
        "ack_now",
        "buf",
        "buffer_size",
        "buffered",
        "delayed_ack",
        "delayed_ack_at",
        "dsack",
        "fin_offset",
        "irs",
        "mss",
        "ooo",
        "rcv_adv",
        "rcv_nxt",
        "rcv_offset",
        "rcv_up",
        "recent_blocks",
        "sack_ok",
        "segments_unacked",
        "taken",
        "wscale",
    )

    def __init__(self, config: TcpConfig) -> None:
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window last advertised: RCV.NXT + RCV.WND as the peer saw it
        self.rcv_offset = 0  # stream offset of rcv_nxt (bytes of data received in order; never wraps)
        self.rcv_up = 0  # RCV.UP as a stream offset: where the peer's urgent data ends
        self.taken = 0  # bytes the application has taken
        # In-order bytes the application has not taken, as the payloads that brought them: taking them joins the
        # pieces once (or hands over a lone payload as it is), where a bytearray would copy every byte twice.
        self.buf: list[bytes] = []
        self.buffered = 0
        self.buffer_size = config.receive_buffer
        self.mss = config.mss
        self.delayed_ack = config.delayed_ack
        self.ooo = Reassembler(config.max_out_of_order_blocks)
        self.fin_offset: int | None = None  # stream offset of a FIN seen but not yet reached
        self.ack_now = False
        self.delayed_ack_at: float | None = None
        self.segments_unacked = 0
        self.wscale = 0  # RCV.WND.SHIFT, once window scaling is agreed (RFC 7323 §2.2)
        self.sack_ok = False
        self.dsack: tuple[int, int] | None = None  # a duplicate to report first in the next ACK (RFC 2883)
        self.recent_blocks: list[int] = []  # starts of out-of-order ranges, most recently changed first

    def start(self, irs: int) -> None:
        """RFC 9293 §3.10.7.3: "RCV.NXT is set to SEG.SEQ+1, IRS is set to SEG.SEQ"."""
        self.irs = irs
        self.rcv_nxt = seq_add(irs, 1)
        self.rcv_adv = seq_add(self.rcv_nxt, self.window())

    # -- the window -----------------------------------------------------------------------------------------

    def free_space(self) -> int:
        return self.buffer_size - self.buffered

    def window(self) -> int:
        """RCV.WND: the room we have, but never moving the right edge left once advertised.

        RFC 9293 §3.8.6 (SHLD-14): the receiver is "strongly discouraged" from shrinking the window.
        """
        wnd = self.free_space()
        advertised = seq_sub(self.rcv_adv, self.rcv_nxt)
        if advertised > wnd:
            wnd = advertised
        cap = MAX_UNSCALED_WINDOW << self.wscale
        return cap if wnd > cap else max(wnd, 0)

    def advertise(self, syn: bool = False) -> int:
        """The window field for an outgoing segment; remembers the right edge it promises.

        RFC 7323 §2.2: the window in a SYN is never scaled; elsewhere it is shifted right by RCV.WND.SHIFT, and
        rounded up where rounding down would move the promised right edge left.
        """
        wnd = self.window()
        if syn:
            wnd = min(wnd, MAX_UNSCALED_WINDOW)
            self.rcv_adv = (self.rcv_nxt + wnd) & SEQ_MASK
            return wnd
        shift = self.wscale
        field = wnd >> shift
        if field << shift < seq_sub(self.rcv_adv, self.rcv_nxt):
            field += 1
        self.rcv_adv = (self.rcv_nxt + (field << shift)) & SEQ_MASK
        return field

    def window_opened_enough(self) -> bool:
        """RFC 9293 §3.8.6.2.2 (MUST-39), receiver SWS avoidance: announce a larger window only once the right
        edge can move by at least min(Fr * RCV.BUFF, Eff.snd.MSS), Fr = 1/2."""
        current = seq_sub(self.rcv_adv, self.rcv_nxt)
        room = min(self.free_space(), MAX_UNSCALED_WINDOW << self.wscale)
        return room - current >= min(self.buffer_size // 2, self.mss)

    # -- acknowledgment policy ------------------------------------------------------------------------------

    def on_in_order_segment(self, now: float, length: int) -> None:
        """RFC 9293 §3.8.6.3 (MUST-40, SHLD-18, SHLD-19): ACK at least every second full-size segment, and
        never later than the delayed-ACK timeout. A super-segment from an offloading device counts as the
        full-size segments it holds."""
        self.segments_unacked += length // self.mss if length > self.mss else 1
        if self.segments_unacked >= 2:
            self.ack_now = True
        elif self.delayed_ack_at is None:
            self.delayed_ack_at = now + self.delayed_ack

    def on_ack_sent(self) -> None:
        self.ack_now = False
        self.delayed_ack_at = None
        self.segments_unacked = 0

    # -- data -----------------------------------------------------------------------------------------------

    def accept(self, data_seq: int, payload: bytes, fin: bool) -> tuple[int, bool]:
        """Take the text of an acceptable segment whose first data byte is ``data_seq``.

        Returns (bytes newly in order, whether the FIN is now reached in order). Bytes before RCV.NXT are
        trimmed (RFC 9293 §3.10.7.4: "segments with higher beginning sequence numbers ... held"; overlap is
        cut), bytes past the window are cut and take the FIN with them.
        """
        delta = seq_sub(data_seq, self.rcv_nxt)
        if delta < 0:
            if payload and self.sack_ok:
                # RFC 2883 §4: report the duplicate in the first SACK block of the next ACK.
                start = self.rcv_offset + delta
                self.dsack = (start, min(start + len(payload), self.rcv_offset))
            if -delta > len(payload):
                return 0, False  # wholly old, FIN included (it was already processed)
            payload = payload[-delta:]
            delta = 0
        room = self.window() - delta
        if len(payload) > room:
            payload = payload[: max(room, 0)]
            fin = False
        if fin:
            self.fin_offset = self.rcv_offset + delta + len(payload)
            if delta > 0 and not payload:
                self.ack_now = True  # RFC 5681 §4.2: an out-of-order segment, a bare FIN too, is ACKed at once
        delivered = 0
        if payload:
            if delta == 0:
                delivered = self._deliver(payload)
                had_hole = len(self.ooo) > 0
                while self.ooo.bytes_held:
                    more = self.ooo.pop_ready(self.rcv_offset)
                    if not more:
                        break
                    delivered += self._deliver(more)
                if had_hole:
                    # RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at once a segment that fills in (part of) a gap.
                    self.ack_now = True
            else:
                start = self.rcv_offset + delta
                new = self.ooo.insert(start, payload)
                if self.sack_ok and new >= 0:
                    if not new:
                        self.dsack = (start, start + len(payload))
                    self._touch_block(start)
                # RFC 5681 §4.2: "A TCP receiver SHOULD send an immediate duplicate ACK when an out-of-order
                # segment arrives."
                self.ack_now = True
        fin_reached = self.fin_offset is not None and self.fin_offset == self.rcv_offset
        return delivered, fin_reached

    def _touch_block(self, start: int) -> None:
        recent = self.recent_blocks
        if start in recent:
            recent.remove(start)
        recent.insert(0, start)
        del recent[MAX_SACK_BLOCKS:]

    def sack_blocks(self, limit: int) -> tuple[tuple[int, int], ...]:
        """The SACK blocks for an outgoing ACK, as sequence numbers (RFC 2018 §4): a pending D-SACK first
        (RFC 2883 §4), then the block holding the most recently received segment, then the other blocks, most
        recently changed first, "as many distinct SACK blocks as possible"."""
        blocks: list[tuple[int, int]] = []
        if self.dsack is not None:
            blocks.append(self.dsack)
            self.dsack = None
        if self.ooo.bytes_held:
            held = []
            for start in self.recent_blocks:
                block = self.ooo.block_containing(start)
                if block is not None and block not in held:
                    held.append(block)
            self.recent_blocks = [start for start, _ in held]
            if len(held) < limit:
                held += [b for b in self.ooo.blocks() if b not in held]
            blocks += held
        elif self.recent_blocks:
            self.recent_blocks.clear()
        base, base_seq = self.rcv_offset, self.rcv_nxt
        return tuple(
            ((base_seq + (s - base)) & SEQ_MASK, (base_seq + (e - base)) & SEQ_MASK) for s, e in blocks[:limit]
        )

    def _deliver(self, data: bytes) -> int:
        self.buf.append(data)
        self.buffered += len(data)
        self.rcv_offset += len(data)
        self.rcv_nxt = (self.rcv_nxt + len(data)) & SEQ_MASK
        return len(data)

    def consume_fin(self) -> None:
        """The FIN occupies one sequence number (RFC 9293 §3.10.7.4 eighth: "advance RCV.NXT over the FIN")."""
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self.fin_offset = None
        self.ack_now = True

    def take(self) -> bytes:
        """Hand all buffered in-order bytes to the application."""
        buf = self.buf
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        self.buffered = 0
        self.taken += len(data)
        return data

    def discard(self) -> None:
        """RFC 9293 §3.10.7.4 second: on reset "all segment queues should be flushed"."""
        self.buf.clear()
        self.buffered = 0
        self.ooo.clear()
        self.fin_offset = None
