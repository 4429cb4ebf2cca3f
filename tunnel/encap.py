r"""The envelope between cluster nodes: GUE (draft-ietf-intarea-gue-09, variant 0) whose private data authenticates
the sender, sealed by ``Sealer`` and opened by ``Opener``. Knows nothing of TCP: a data payload is a whole IPv4 or
IPv6 packet, a control payload is the node's own opaque message.

All fields are big-endian; docs/protocol.md ("Encapsulation") specifies every byte and gives golden vectors.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0 0|C| Hlen=10 |  Proto/ctype  |          Flags = 0            |  GUE base header (draft §3.1)
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Format = 1   |   Hop count   |    Key id     |  Reserved = 0 |  \
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   |
    |        Sender node id         |         Reserved = 0          |   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   |  40 bytes of GUE private data
    |                 Sender incarnation (64 bits)                  |   |  (header space beyond the extension
    |                 Counter (64 bits)                             |   |  fields, draft §3.4)
    |                 Tag (128 bits)                                |  /
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Payload: an IPv4 or IPv6 packet, or a control message  |

The tag is keyed BLAKE2b-128 over the 44-byte header with the tag zeroed, then the payload. Authenticated, not
encrypted: the payloads are TCP segments that crossed the Internet in clear anyway.
"""

import enum
import hashlib
import hmac
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .keys import ClusterKeys

HEADER_LEN = 44  # GUE base header 4 + private data 40
UDP_OVERHEAD_V4 = 20 + 8 + HEADER_LEN  # outer IPv4 + UDP + ours = 72
UDP_OVERHEAD_V6 = 40 + 8 + HEADER_LEN  # outer IPv6 + UDP + ours = 92

GUE_VARIANT = 0  # draft §2.1: variant 0 carries the GUE header (variant 1 is bare IP, no room for a tag)
# draft §3.1: Hlen counts the header's 32-bit words after the first four. No flag is set, so no extension field
# claims any of them: all 40 bytes are header space beyond the extension fields (draft §3.4), which a generic
# decapsulator skips and we fill with our private data.
HLEN = (HEADER_LEN - 4) // 4
FORMAT_VERSION = 1  # our private data's own version, so it can change without a new GUE variant
# draft §3.2.1: for a data message Proto/ctype is the IP protocol number of the payload (IANA Protocol Numbers).
PROTO_IPV4 = 4  # IP-in-IP (RFC 2003)
PROTO_IPV6 = 41  # IPv6 encapsulation (RFC 2473)
# draft §3.2.2 defines two control types: 0, a control payload that needs more context to interpret, and 255, the
# shared experimental type, whose payload must start with a 32-bit ExID. Ours is 0: the authenticated private data
# is the context (this cluster's format 1) and the node's message carries its own type. 255 would put an ExID we
# could never register in front of every message, and 1-254 have no assignment (IANA never created the registry),
# so any of them could collide with someone else's meaning.
CTYPE_CONTROL = 0
TAG_LEN = 16  # 128-bit tags: forging one takes 2^128 guesses, and each guess costs a datagram
PERSONALIZATION = b"anycast-tcp/gue1"  # BLAKE2's 16-byte personalization: our tags mean nothing elsewhere
COUNTER_MAX = 2**64 - 1
WINDOW_MIN = 32  # RFC 4303 §3.4.3: "A minimum window size of 32 packets MUST be supported"
WINDOW_MAX = 16384  # each accept shifts the bitmap: 0.25 us at 1024 bits, 0.67 us at 16384, 2.7 us at 65536

# Why open() dropped a datagram, in the order it checks: nothing unauthenticated reaches the per-sender state.
DROP_REASONS = (
    "truncated",  # shorter than the header
    "not_gue",  # GUE variant not 0, Hlen not 10, or a flag set: not our envelope
    "bad_version",  # our private data's format is not 1
    "bad_header",  # reserved bits set, counter 0, unknown proto/ctype, payload not matching proto, or empty
    "unknown_sender",  # sender node id not among the peers
    "unknown_key",  # key id not among the keys held
    "bad_tag",  # forged, corrupted, or sealed with another key under the same id
    "stale_incarnation",  # an incarnation older than one this sender has already shown, authenticated
    "replay",  # counter already seen, or older than the replay window
)

_PREFIX = struct.Struct("!BBHBBBBHHQQ")  # everything before the tag: 28 bytes
_TAG_AT = _PREFIX.size
_ZERO_TAG = bytes(TAG_LEN)
_C_BIT = 0x20
_DATA_BYTE0 = GUE_VARIANT << 6 | HLEN
_CONTROL_BYTE0 = _DATA_BYTE0 | _C_BIT
_PROTO_OF_VERSION = {4: PROTO_IPV4, 6: PROTO_IPV6}
_VERSION_OF_PROTO = {PROTO_IPV4: 4, PROTO_IPV6: 6}

assert _PREFIX.size + TAG_LEN == HEADER_LEN and 4 * HLEN + 4 == HEADER_LEN


def overhead(underlay_ipv6: bool) -> int:
    """Bytes the tunnel adds to each packet: outer IP header, UDP header and ours. A packet of the TUN's MTU must
    fit the underlay's MTU after these, so the TUN MTU is the underlay MTU minus this."""
    return UDP_OVERHEAD_V6 if underlay_ipv6 else UDP_OVERHEAD_V4


class Kind(enum.IntEnum):
    """What a datagram carries; the value is the GUE C bit."""

    DATA = 0
    CONTROL = 1


@dataclass(frozen=True, slots=True)
class Opened:
    """An authenticated, fresh datagram."""

    sender: int
    incarnation: int
    hops: int
    kind: Kind
    payload: bytes
    new_incarnation: bool  # the first datagram from this sender, or the first of its new, higher incarnation


def _mac(key: bytes) -> "hashlib.blake2b":
    # Keyed once here and copied per message: the copy skips BLAKE2b's key block, 1.96 us instead of 2.58 us for
    # a 1400-byte payload (timeit, CPython 3.11).
    return hashlib.blake2b(key=key, digest_size=TAG_LEN, person=PERSONALIZATION)


def _check_int(name: str, value: object, low: int, high: int, hint: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} {value!r} must be a whole number from {low} to {high}{hint}")
    return value


def _check_node_id(node_id: object) -> int:
    return _check_int("node id", node_id, 1, 0xFFFF, " (16 bits on the wire; 0 is reserved)")


def _check_keys(keys: object) -> ClusterKeys:
    if not isinstance(keys, ClusterKeys):
        raise ValueError(f"keys must be a ClusterKeys (from ClusterKeys.load(path)), got {type(keys).__name__}")
    return keys


class Sealer:
    """Seals this node's datagrams. One per node and incarnation, shared by every destination: the counter is per
    sender, so a second Sealer with the same node id and incarnation would have its datagrams dropped as replays.
    A restarted node takes a higher incarnation (docs/protocol.md, "Incarnations": it must never go back).

    ``keys`` may be replaced at any time (a reload after rotation); the counter carries on.
    """

    __slots__ = ("_key_id", "_keys", "_mac", "counter", "incarnation", "node_id")

    def __init__(self, node_id: int, incarnation: int, keys: ClusterKeys) -> None:
        self.node_id = _check_node_id(node_id)
        self.incarnation = _check_int("incarnation", incarnation, 0, COUNTER_MAX, " (64 bits on the wire)")
        self.counter = 0  # the last counter sealed
        self.keys = keys

    @property
    def keys(self) -> ClusterKeys:
        return self._keys

    @keys.setter
    def keys(self, keys: ClusterKeys) -> None:
        self._keys = _check_keys(keys)
        self._key_id = keys.send_id
        self._mac = _mac(keys.keys[keys.send_id])

    def data(self, packet: bytes, hops: int = 1) -> bytes:
        """A datagram carrying ``packet``, a whole IPv4 or IPv6 packet; ``hops`` is how many tunnel hops it has
        taken counting this one (the node sets and limits it; the codec only carries it)."""
        if not packet:
            raise ValueError("cannot seal an empty packet: data carries a whole IPv4 or IPv6 packet")
        proto = _PROTO_OF_VERSION.get(packet[0] >> 4)
        if proto is None:
            raise ValueError(
                f"data must be an IPv4 or IPv6 packet (version 4 or 6 in the first nibble), got first byte "
                f"{packet[0]:#04x}; send other bytes with control()"
            )
        _check_int("hops", hops, 0, 0xFF, " (8 bits on the wire)")
        return self._seal(_DATA_BYTE0, proto, hops, packet)

    def control(self, message: bytes) -> bytes:
        """A datagram carrying ``message``, opaque bytes of the node's control protocol (one hop)."""
        if not message:
            raise ValueError("cannot seal an empty control message: the node's message carries at least its type")
        return self._seal(_CONTROL_BYTE0, CTYPE_CONTROL, 1, message)

    def _seal(self, byte0: int, proto: int, hops: int, payload: bytes) -> bytes:
        counter = self.counter + 1
        if counter > COUNTER_MAX:
            raise OverflowError("the 64-bit counter is spent: restart the node with a higher incarnation")
        self.counter = counter
        prefix = _PREFIX.pack(
            byte0, proto, 0, FORMAT_VERSION, hops, self._key_id, 0, self.node_id, 0, self.incarnation, counter
        )
        mac = self._mac.copy()
        mac.update(prefix)
        mac.update(_ZERO_TAG)
        mac.update(payload)
        return b"".join((prefix, mac.digest(), payload))


class _Window:
    """One sender's replay state: its incarnation, the highest counter accepted, and a bitmap of the counters
    accepted below it (bit i set: counter top - i seen). RFC 4303 §3.4.3's sliding window; a Python int is the
    bitmap, since shifting it is a few word operations in C, so RFC 6479's ring of blocks buys nothing here."""

    __slots__ = ("bitmap", "incarnation", "top")

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation
        self.top = 0
        self.bitmap = 0

    def accept(self, counter: int, size: int, mask: int) -> bool:
        """Record ``counter`` and say True, or say False for a duplicate or one older than the window."""
        top = self.top
        if counter > top:
            shift = counter - top
            # A jump of the window's size or more leaves no earlier counter inside it (and never shift by 2^63).
            self.bitmap = ((self.bitmap << shift) | 1) & mask if shift < size else 1
            self.top = counter
            return True
        offset = top - counter
        if offset >= size:
            return False
        bit = 1 << offset
        if self.bitmap & bit:
            return False
        self.bitmap |= bit
        return True


class Opener:
    """Opens datagrams from the cluster's other nodes. ``open`` never raises on what it is given: a datagram that
    fails a check is dropped and its reason counted in ``drops`` (a Counter over DROP_REASONS).

    ``senders`` are the peers' node ids. Leave out this node's own id: with one cluster key, our own datagrams
    reflected back at us would otherwise open. ``keys`` and ``senders`` may be replaced at any time (a reload);
    replay state survives both, so a peer dropped and re-added cannot be replayed at. ``forget`` drops a peer's.
    """

    __slots__ = ("_keys", "_macs", "_mask", "_senders", "_windows", "drops", "window")

    def __init__(self, keys: ClusterKeys, senders: Iterable[int], *, window: int = 1024) -> None:
        self.window = _check_int("window", window, WINDOW_MIN, WINDOW_MAX, " counters")
        self._mask = (1 << window) - 1
        self.keys = keys
        self.senders = senders
        self.drops: Counter[str] = Counter()
        self._windows: dict[int, _Window] = {}

    @property
    def keys(self) -> ClusterKeys:
        return self._keys

    @keys.setter
    def keys(self, keys: ClusterKeys) -> None:
        self._keys = _check_keys(keys)
        self._macs = {key_id: _mac(key) for key_id, key in keys.keys.items()}

    @property
    def senders(self) -> frozenset[int]:
        return self._senders

    @senders.setter
    def senders(self, senders: Iterable[int]) -> None:
        if isinstance(senders, int | str | bytes):
            raise ValueError(f"senders must be a collection of node ids like [2, 3], not {senders!r}")
        self._senders = frozenset(_check_node_id(sender) for sender in senders)

    def forget(self, sender: int) -> None:
        """Drop ``sender``'s replay state (a peer removed for good). Its next datagram counts as a new
        incarnation, and until then its old datagrams of the current incarnation would open again."""
        self._windows.pop(sender, None)

    def _drop(self, reason: str) -> None:
        self.drops[reason] += 1

    def open(self, datagram: bytes) -> Opened | None:
        """The authenticated payload of ``datagram``, or None when it is dropped (reason counted in ``drops``)."""
        if not isinstance(datagram, bytes):
            datagram = bytes(datagram)  # a bytearray or memoryview from a receive buffer
        if len(datagram) < HEADER_LEN:
            return self._drop("truncated")
        byte0, proto, flags, version, hops, key_id, reserved8, sender, reserved16, incarnation, counter = (
            _PREFIX.unpack_from(datagram)
        )
        if byte0 & ~_C_BIT != _DATA_BYTE0 or flags:
            return self._drop("not_gue")
        if version != FORMAT_VERSION:
            return self._drop("bad_version")
        payload = datagram[HEADER_LEN:]
        if reserved8 or reserved16 or not counter or not payload:
            return self._drop("bad_header")
        control = byte0 & _C_BIT
        if control:
            if proto != CTYPE_CONTROL:
                return self._drop("bad_header")
        elif _VERSION_OF_PROTO.get(proto) != payload[0] >> 4:
            return self._drop("bad_header")
        if sender not in self._senders:
            return self._drop("unknown_sender")
        template = self._macs.get(key_id)
        if template is None:
            return self._drop("unknown_key")
        mac = template.copy()
        mac.update(datagram[:_TAG_AT])
        mac.update(_ZERO_TAG)
        mac.update(payload)
        if not hmac.compare_digest(mac.digest(), datagram[_TAG_AT:HEADER_LEN]):
            return self._drop("bad_tag")
        # DEVIATION: RFC 4303 §3.4.3 checks the window before the ICV, as a cheap early reject; we check it after
        # the tag, so a forged datagram is always counted as bad_tag and never as a replay. The state is updated
        # only here, after the tag, as the RFC requires.
        window = self._windows.get(sender)
        if window is None or incarnation > window.incarnation:
            window = self._windows[sender] = _Window(incarnation)
            window.accept(counter, self.window, self._mask)
            new_incarnation = True
        elif incarnation < window.incarnation:
            return self._drop("stale_incarnation")
        elif not window.accept(counter, self.window, self._mask):
            return self._drop("replay")
        else:
            new_incarnation = False
        return Opened(sender, incarnation, hops, Kind.CONTROL if control else Kind.DATA, payload, new_incarnation)
