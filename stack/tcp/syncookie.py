"""SYN cookies (RFC 4987 §3.6): when a listener's backlog is full, answer a SYN without keeping any state, with
an ISN that encodes what the handshake must remember, and rebuild the connection from the ACK that returns it.

The cookie is ``start + v`` with ``v < span``, so a caller can keep every cookie inside a range of the sequence
space (the anycast node: its home range, so that a cookie ACK landing on another node is still forwarded to the
owner). ``v`` packs, from the low bits up: the MSS index (2 bits, ``MSS_TABLE`` or ``MSS_TABLE_V6``), the time
counter's low 2 bits (one counter per ``PERIOD`` seconds; a cookie is good for the current and the previous
period, as Linux's MAX_SYNCOOKIE_AGE), and a keyed MAC over the 4-tuple, the client's ISN, the full counter and
the MSS index, as many bits of it as the span leaves (24 for the whole space, as Linux's). The counter in the MAC
rotates the effective key every period. When the client sends timestamps, window scaling and SACK-permitted ride
in the low bits of the SYN,ACK's TSval and come back in the ACK's TSecr (``timestamp_with_options``); without
timestamps a connection born of a cookie runs without them, as Linux's does.
"""

import hashlib
import struct

from ..seq import SEQ_MASK

MSS_TABLE = (536, 1300, 1440, 1460)  # Linux's msstab for IPv4: the values clients commonly send, rounded down
MSS_TABLE_V6 = (1220, 1420, 1440, 8940)  # and for IPv6 (msstab in syncookies.c: MTUs less 60)
PERIOD = 64.0  # seconds per counter step (Linux: 60 s, as jiffies allow)
_LOW_BITS = 4  # MSS index (2) and counter (2)
_MAX_MAC_BITS = 24
MIN_SPAN = 1 << (_LOW_BITS + 16)  # a MAC of 16 bits at least: a blind guess succeeds once in 65,536
_PORTS_ISN_COUNT = struct.Struct("!HHIQB")


class SynCookies:
    def __init__(self, secret: bytes, *, start: int = 0, span: int = 1 << 32) -> None:
        """Cookies in ``[start, start + span)`` (modulo 2^32); ``span`` must leave at least 16 bits of MAC."""
        if len(secret) < 16:
            raise ValueError("the SYN cookie secret must be at least 16 bytes: read it from os.urandom")
        if not MIN_SPAN <= span <= 1 << 32:
            raise ValueError(f"span={span} leaves too few bits for a cookie's MAC: give at least 2^20 sequence numbers")
        self._key = hashlib.blake2s(secret, person=b"syncook").digest()
        self.start = start & SEQ_MASK
        self.mac_bits = min(_MAX_MAC_BITS, span.bit_length() - 1 - _LOW_BITS)
        self.made = self.accepted = self.rejected = 0

    def _mac(self, local: bytes, lport: int, remote: bytes, rport: int, client_isn: int, count: int, mss_i: int):
        data = local + remote + _PORTS_ISN_COUNT.pack(lport, rport, client_isn, count, mss_i)
        digest = hashlib.blake2s(data, key=self._key, digest_size=4).digest()
        return int.from_bytes(digest, "big") & ((1 << self.mac_bits) - 1)

    def make(self, local: bytes, lport: int, remote: bytes, rport: int, client_isn: int, mss: int, now: float) -> int:
        """The ISN of the stateless SYN,ACK answering a SYN with sequence ``client_isn`` offering ``mss``."""
        table = MSS_TABLE if len(local) == 4 else MSS_TABLE_V6
        mss_i = max((i for i, value in enumerate(table) if value <= mss), default=0)
        count = int(now // PERIOD)
        mac = self._mac(local, lport, remote, rport, client_isn, count, mss_i)
        self.made += 1
        return (self.start + (mac << _LOW_BITS | (count & 3) << 2 | mss_i)) & SEQ_MASK

    def check(self, local: bytes, lport: int, remote: bytes, rport: int, ack_seg_seq: int, ack: int, now: float):
        """The MSS a returning ACK (sequence ``ack_seg_seq``, acknowledging ``ack``) was given, or None if it acks
        no cookie of ours from the last two periods."""
        value = (ack - 1 - self.start) & SEQ_MASK
        if value >> (self.mac_bits + _LOW_BITS):
            self.rejected += 1
            return None
        mss_i, low_count, mac = value & 3, value >> 2 & 3, value >> _LOW_BITS
        count = int(now // PERIOD)
        client_isn = (ack_seg_seq - 1) & SEQ_MASK
        for candidate in (count, count - 1):
            if candidate < 0 or candidate & 3 != low_count:
                continue  # (no period before the clock's first: found by tests/fuzz/fuzz_node.py)
            if mac == self._mac(local, lport, remote, rport, client_isn, candidate, mss_i):
                self.accepted += 1
                return (MSS_TABLE if len(local) == 4 else MSS_TABLE_V6)[mss_i]
        self.rejected += 1
        return None


# Window scale and SACK-permitted ride in the low bits of the SYN,ACK's TSval when the client sends timestamps
# (Linux's cookie_init_timestamp): it echoes them in the ACK's TSecr. 4 bits of shift (15: none), 1 of SACK.
_TS_BITS = 6
_TS_MASK = (1 << _TS_BITS) - 1
_NO_WSCALE = 0xF


def timestamp_with_options(clock: int, window_scale: int | None, sack: bool) -> int:
    """The TSval for a cookie's SYN,ACK: ``clock`` (the connection's TSval now) with the options in its low bits,
    never ahead of the clock, so the connection's later TSvals do not go backwards (the client's PAWS would drop
    them)."""
    bits = (_NO_WSCALE if window_scale is None else window_scale) | sack << 4
    value = (clock & ~_TS_MASK) | bits
    if bits > clock & _TS_MASK:
        value = (value - (1 << _TS_BITS)) & SEQ_MASK  # one step of 64 back: behind the clock, as Linux does
    return value


def options_from_timestamp(echoed: int) -> tuple[int | None, bool]:
    """(window scale or None, SACK-permitted) from the TSecr of a cookie's returning ACK."""
    shift = echoed & _NO_WSCALE
    return (None if shift == _NO_WSCALE else min(shift, 14)), bool(echoed >> 4 & 1)
