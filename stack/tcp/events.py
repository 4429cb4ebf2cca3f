"""Events a connection hands to its application, in the order they happened (h11 style: small and frozen)."""

import enum
from dataclasses import dataclass


class CloseReason(enum.Enum):
    NORMAL = "normal"  # both FINs exchanged and acknowledged (or TIME-WAIT ran out)
    RESET = "reset"  # the peer sent an acceptable RST on a synchronized connection
    REFUSED = "refused"  # RST in answer to our SYN (RFC 9293 §3.10.7.3)
    TIMED_OUT = "timed out"  # R2 reached while retransmitting (RFC 9293 §3.8.3)
    ABORTED = "aborted"  # the application aborted, or closed with data still arriving
    UNREACHABLE = "unreachable"  # an ICMP error ended the handshake (RFC 5927 §5.2)


@dataclass(frozen=True, slots=True)
class Established:
    """The three-way handshake completed."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class SendSpace:
    """The send buffer has room again after a short ``send``."""


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer's FIN arrived in order: no more data will come (end of stream)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """The peer reset the connection; any undelivered data is gone."""

    refused: bool = False


@dataclass(frozen=True, slots=True)
class UrgentData:
    """RFC 9293 §3.8.5 (MUST-32): the peer marked urgent data that ends at stream offset ``end`` (counted in
    bytes from the start of the stream). The bytes arrive inline, in order; ``Connection.urgent_remaining``
    says how many are still unread (MUST-33). Queued ahead of data, so it arrives even while reading is
    paused."""

    end: int


@dataclass(frozen=True, slots=True)
class SendWatermark:
    """SND.NXT has reached the mark set with ``Connection.set_send_watermark`` (once per mark)."""

    mark: int


@dataclass(frozen=True, slots=True)
class SoftError:
    """RFC 9293 §3.9.1.8 (MUST-47): an ICMP soft error about this connection; it goes on."""

    description: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is gone; always the last event."""

    reason: CloseReason


Event = Established | DataReceived | SendSpace | PeerClosed | Reset | UrgentData | SendWatermark | SoftError | Closed
