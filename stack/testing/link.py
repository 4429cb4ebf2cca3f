"""One direction of a simulated link: bandwidth, propagation delay, a drop-tail queue and seeded faults.

Every kind of fault draws from its own ``random.Random``, seeded from the link's seed and the fault's name, so
turning one fault up or down never changes the decisions of another, and a seed replays a run exactly.
"""

import dataclasses
import heapq
import random
from dataclasses import dataclass

from tunnel._checks import check_probability
from tunnel.faults import FaultDice, Faults


@dataclass(frozen=True, slots=True)
class LinkFaults:
    loss: float = 0.0  # probability a packet vanishes
    duplicate: float = 0.0  # probability a packet is delivered twice
    reorder: float = 0.0  # probability a packet is held back by ``reorder_delay`` (others overtake it)
    corrupt: float = 0.0  # probability one random bit of a packet is flipped
    delay: float = 0.005  # one-way propagation delay, seconds
    jitter: float = 0.0  # extra uniform random delay, seconds
    reorder_delay: float = 0.01
    bandwidth: float | None = None  # bytes per second; None = infinitely fast
    queue_bytes: int | None = None  # drop-tail queue limit when ``bandwidth`` is set
    drop: frozenset[int] = frozenset()  # exact packets to lose, by their 1-based count on this link

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            check_probability(name, getattr(self, name))
        if self.delay < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("delay, jitter and reorder_delay must not be negative")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive (bytes per second) or None")

    def __repr__(self) -> str:
        # Only what differs from a perfect link's defaults: shrunk hypothesis examples stay one short line.
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"LinkFaults({', '.join(changed)})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # hypothesis's (and IPython's) pretty printer
        printer.text(repr(self))


class FaultyLink:
    def __init__(self, faults: LinkFaults | None = None, seed: int | str = 0) -> None:
        self.faults = faults or LinkFaults()
        self._dice = FaultDice(self._dice_faults(self.faults), seed)
        self._jitter = random.Random(f"{seed}:jitter")
        self._queue: list[tuple[float, int, bytes]] = []
        self._order = 0
        self._busy_until = 0.0  # when the transmitter finishes what it already holds
        self.sent = self.delivered = self.lost = self.duplicated = self.reordered = self.corrupted = 0
        self.queue_drops = 0

    @staticmethod
    def _dice_faults(faults: LinkFaults) -> Faults:
        return Faults(faults.loss, faults.duplicate, faults.reorder, faults.corrupt)

    def set_faults(self, faults: LinkFaults) -> None:
        """Change the link's behaviour mid-run (heal a partition, add loss); the RNG streams continue."""
        self.faults = faults
        self._dice.faults = self._dice_faults(faults)

    def send(self, packet: bytes, now: float) -> None:
        f = self.faults
        self.sent += 1
        dice = self._dice
        if self.sent in f.drop or dice.lose():
            self.lost += 1
            return
        depart = now
        if f.bandwidth is not None:
            backlog = max(self._busy_until - now, 0.0) * f.bandwidth
            if f.queue_bytes is not None and backlog + len(packet) > f.queue_bytes:
                self.queue_drops += 1
                return
            depart = max(self._busy_until, now) + len(packet) / f.bandwidth
            self._busy_until = depart
        arrive = depart + f.delay
        if f.jitter:
            arrive += self._jitter.random() * f.jitter
        if dice.reorder():
            self.reordered += 1
            arrive += f.reorder_delay
        damaged = dice.corrupt(packet)
        if damaged is not None:
            self.corrupted += 1
            packet = damaged
        self._push(arrive, packet)
        if dice.duplicate():
            self.duplicated += 1
            self._push(arrive + f.reorder_delay * dice.duplicate_spacing(), packet)

    def _push(self, at: float, packet: bytes) -> None:
        self._order += 1
        heapq.heappush(self._queue, (at, self._order, packet))

    def next_delivery(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def deliver(self, now: float) -> list[bytes]:
        """Packets that have arrived by ``now``, in arrival order."""
        out = []
        queue = self._queue
        while queue and queue[0][0] <= now:
            out.append(heapq.heappop(queue)[2])
        self.delivered += len(out)
        return out

    def __len__(self) -> int:
        return len(self._queue)
