"""What an ICMP error about one of our segments means to TCP (RFC 9293 §3.9.2.2, RFC 5927, RFC 1191, RFC 8201).

The host finds the connection from the quoted header; this module only classifies the message.
"""

import enum
from dataclasses import dataclass

from ..wire import IcmpMessage


class IcmpKind(enum.Enum):
    PATH_MTU = "path mtu"  # fragmentation needed / packet too big: lower the effective MSS
    HARD = "hard"  # the peer's stack said no (port or protocol unreachable)
    SOFT = "soft"  # something on the path (net or host unreachable, time exceeded, parameter problem)
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class IcmpError:
    kind: IcmpKind
    description: str
    mtu: int | None = None


_V4_UNREACHABLE = {
    0: "network unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    5: "source route failed",
    6: "destination network unknown",
    7: "destination host unknown",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited",
}
_V6_UNREACHABLE = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed policy",
    6: "reject route to destination",
}


def classify(msg: IcmpMessage) -> IcmpError:
    if msg.version == 4:
        if msg.type == 3:
            if msg.code == 4:
                return IcmpError(IcmpKind.PATH_MTU, "fragmentation needed", msg.mtu)
            description = _V4_UNREACHABLE.get(msg.code, f"destination unreachable (code {msg.code})")
            # RFC 9293 §3.9.2.2 (SHLD-26): Destination Unreachable codes 2-4 are hard errors (4 is PMTU above).
            return IcmpError(IcmpKind.HARD if msg.code in (2, 3) else IcmpKind.SOFT, description)
        if msg.type == 4:
            # RFC 9293 §3.9.2.2 (MUST-55): "TCP implementations MUST silently discard any received ICMP Source
            # Quench messages".
            return IcmpError(IcmpKind.IGNORE, "source quench")
        if msg.type == 11:
            return IcmpError(IcmpKind.SOFT, "time exceeded")
        if msg.type == 12:
            return IcmpError(IcmpKind.SOFT, "parameter problem")
        return IcmpError(IcmpKind.IGNORE, f"ICMP type {msg.type}")
    if msg.type == 1:
        description = _V6_UNREACHABLE.get(msg.code, f"destination unreachable (code {msg.code})")
        return IcmpError(IcmpKind.HARD if msg.code == 4 else IcmpKind.SOFT, description)
    if msg.type == 2:
        return IcmpError(IcmpKind.PATH_MTU, "packet too big", msg.mtu)
    if msg.type == 3:
        return IcmpError(IcmpKind.SOFT, "time exceeded")
    if msg.type == 4:
        # Code 1, "unrecognized Next Header": the peer has no TCP, like protocol unreachable in IPv4.
        return IcmpError(IcmpKind.HARD if msg.code == 1 else IcmpKind.SOFT, "parameter problem")
    return IcmpError(IcmpKind.IGNORE, f"ICMPv6 type {msg.type}")
