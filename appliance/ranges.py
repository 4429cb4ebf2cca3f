"""Home ranges: the sequence space cut into equal slices, one per node, and ISNs chosen inside our own.

Every node picks the ISNs of the connections it accepts inside its slice, low enough to send ``headroom`` bytes
before nearing the slice's end, so any node can tell from a segment's acknowledgment number whose bytes the
client is acknowledging (DESIGN.md §2). The ISN stays unpredictable from outside: RFC 6528's keyed hash of the
4-tuple plus a clock, reduced into the allowed part of the slice.
"""

from dataclasses import dataclass

from stack.seq import SEQ_MOD
from stack.tcp.isn import CLOCK_TICKS_PER_SECOND, Rfc6528Isn

MiB = 1 << 20
DEFAULT_HEADROOM = 256 * MiB


@dataclass(frozen=True, slots=True)
class RangePlan:
    """``ranges`` equal slices of the 32-bit sequence space; node ``node_id`` (1-based) owns slice ``node_id - 1``."""

    ranges: int
    node_id: int
    headroom: int = DEFAULT_HEADROOM

    def __post_init__(self) -> None:
        if self.ranges < 1 or self.ranges & (self.ranges - 1):
            raise ValueError(f"ranges={self.ranges} must be a power of two (2, 4, 8, ...), at least the node count")
        if not 1 <= self.node_id <= self.ranges:
            raise ValueError(f"node id {self.node_id} is outside 1..{self.ranges}: raise ranges or renumber the node")
        if not 0 <= self.headroom < self.slice_size:
            raise ValueError(
                f"headroom {self.headroom} bytes does not fit a slice of {self.slice_size} bytes "
                f"({self.ranges} ranges): lower headroom below {self.slice_size // MiB} MiB or use fewer ranges"
            )

    @property
    def slice_size(self) -> int:
        return SEQ_MOD // self.ranges

    @property
    def slice_start(self) -> int:
        return (self.node_id - 1) * self.slice_size

    @property
    def slice_end(self) -> int:
        """Just past our slice (it wraps to 0 for the last slice)."""
        return (self.slice_start + self.slice_size) % SEQ_MOD

    @property
    def isn_span(self) -> int:
        """How many ISNs are allowed: the slice less the headroom every connection must be able to send."""
        return self.slice_size - self.headroom

    def owner_of(self, seq: int) -> int:
        """The node id whose slice holds sequence number ``seq`` (any 32-bit value; the slices tile the space)."""
        return (seq % SEQ_MOD) // self.slice_size + 1


class HomeRangeIsn:
    """The ISN source for a node's Host: RFC 6528 ISN = M + F(4-tuple, secret), reduced into
    ``[slice_start, slice_start + isn_span)``. M advances with the clock, so consecutive ISNs for one 4-tuple climb
    (modulo the span) as RFC 9293 §3.4.1 wants; F keeps them unguessable from outside (MUST-9)."""

    def __init__(self, plan: RangePlan, secret: bytes) -> None:
        self.plan = plan
        self._rfc6528 = Rfc6528Isn(secret)

    def __call__(self, local_addr: bytes, local_port: int, remote_addr: bytes, remote_port: int, now: float) -> int:
        plan = self.plan
        clock = int(now * CLOCK_TICKS_PER_SECOND)
        offset = self._rfc6528.offset(local_addr, local_port, remote_addr, remote_port)
        return plan.slice_start + (clock + offset) % plan.isn_span
