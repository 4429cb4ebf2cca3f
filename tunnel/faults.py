"""Seeded packet faults: the decisions, and a device wrapper that applies them to real traffic.

Each kind of fault draws from its own ``random.Random``, seeded from one seed and the fault's name, so changing
one rate never changes another's decisions and a seed replays a run. The simulated link (stack.testing) uses
the same decisions; ``FaultyDevice`` applies them to packets crossing a real device, in both directions.
"""

import heapq
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._checks import check_probability


@dataclass(frozen=True, slots=True)
class Faults:
    loss: float = 0.0  # probability a packet vanishes
    duplicate: float = 0.0  # probability a packet is delivered twice
    reorder: float = 0.0  # probability a packet is held back and overtaken
    corrupt: float = 0.0  # probability one random bit of a packet is flipped
    delay: float = 0.0  # seconds added to every packet (FaultyDevice; the simulated link has its own)
    jitter: float = 0.0  # extra uniform random delay, seconds

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            check_probability(name, getattr(self, name))
        if self.delay < 0 or self.jitter < 0:
            raise ValueError(f"delay={self.delay} and jitter={self.jitter} must not be negative (seconds)")


class FaultDice:
    """The seeded decisions, one RNG per kind of fault."""

    __slots__ = ("_corrupt", "_duplicate", "_jitter", "_loss", "_reorder", "faults")

    def __init__(self, faults: Faults, seed: int | str) -> None:
        self.faults = faults
        self._loss = random.Random(f"{seed}:loss")
        self._duplicate = random.Random(f"{seed}:duplicate")
        self._reorder = random.Random(f"{seed}:reorder")
        self._corrupt = random.Random(f"{seed}:corrupt")
        self._jitter = random.Random(f"{seed}:jitter")

    def lose(self) -> bool:
        p = self.faults.loss
        return bool(p) and self._loss.random() < p

    def duplicate(self) -> bool:
        p = self.faults.duplicate
        return bool(p) and self._duplicate.random() < p

    def reorder(self) -> bool:
        p = self.faults.reorder
        return bool(p) and self._reorder.random() < p

    def corrupt(self, packet: bytes) -> bytes | None:
        """A copy of ``packet`` with one bit flipped, or None when this packet is spared."""
        p = self.faults.corrupt
        if not p or not packet or self._corrupt.random() >= p:
            return None
        bit = self._corrupt.randrange(len(packet) * 8)
        damaged = bytearray(packet)
        damaged[bit >> 3] ^= 1 << (bit & 7)
        return bytes(damaged)

    def delay(self) -> float:
        f = self.faults
        return f.delay + (self._jitter.random() * f.jitter if f.jitter else 0.0)

    def duplicate_spacing(self) -> float:
        """How far behind the original its duplicate comes, as a fraction in [0, 1) (from the duplicate stream)."""
        return self._duplicate.random()


class FaultyDevice:
    """Wraps any device and applies seeded faults to what it reads and what it writes.

    A reordered packet is held back and released after the next packet in the same direction (or with the next
    batch), so later packets overtake it; no timers are needed, and TCP's retransmissions guarantee a next packet.
    Delay does need time: delayed packets wait in a queue, ``next_wakeup()`` says when the next is due and the
    runtime calls ``poll()`` then (``clock`` gives the time; the event loop's clock in the runtime).
    """

    def __init__(
        self, device, faults: Faults, seed: int | str = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.device = device
        self.mtu = device.mtu
        self.stats = device.stats
        self._in = FaultDice(faults, f"{seed}:in")
        self._out = FaultDice(faults, f"{seed}:out")
        self._held_in: list[bytes] = []
        self._held_out: list[bytes] = []
        self.clock = clock
        self._delayed_in: list[tuple[float, int, bytes]] = []  # (due, order, packet): a heap
        self._delayed_out: list[tuple[float, int, bytes]] = []
        self._order = 0
        self.lost = self.duplicated = self.reordered = self.corrupted = 0

    def fileno(self) -> int | None:
        return self.device.fileno()

    @property
    def on_readable(self):
        return self.device.on_readable

    @on_readable.setter
    def on_readable(self, callback) -> None:
        self.device.on_readable = callback

    def _apply(self, packets: Iterable[bytes], dice: FaultDice, held: list[bytes]) -> list[bytes]:
        out = []
        for packet in packets:
            if dice.lose():
                self.lost += 1
                continue
            damaged = dice.corrupt(packet)
            if damaged is not None:
                self.corrupted += 1
                packet = damaged
            copies = 2 if dice.duplicate() else 1
            self.duplicated += copies - 1
            if dice.reorder():
                self.reordered += 1
                held.extend([packet] * copies)
                continue
            out.extend([packet] * copies)
            if held:
                out.extend(held)  # the held ones are overtaken by this packet
                held.clear()
        return out

    def _delay(self, packets: list[bytes], dice: FaultDice, queue: list) -> list[bytes]:
        """With a delay configured, queue the packets until they are due and hand back those that are due now."""
        if not dice.faults.delay and not dice.faults.jitter:
            return packets
        now = self.clock()
        for packet in packets:
            self._order += 1
            heapq.heappush(queue, (now + dice.delay(), self._order, packet))
        return self._due(queue, now)

    @staticmethod
    def _due(queue: list, now: float) -> list[bytes]:
        out = []
        while queue and queue[0][0] <= now:
            out.append(heapq.heappop(queue)[2])
        return out

    def next_wakeup(self) -> float | None:
        """When a delayed packet is next due (in ``clock`` time), or None."""
        due = [queue[0][0] for queue in (self._delayed_in, self._delayed_out) if queue]
        return min(due) if due else None

    def poll(self) -> None:
        """Send the delayed writes that are due; due reads come out of the next read_batch."""
        out = self._due(self._delayed_out, self.clock())
        if out:
            self.device.write_batch(out)

    def read_batch(self, limit: int = 64) -> list[bytes]:
        packets = self.device.read_batch(limit)
        out = self._apply(packets, self._in, self._held_in)
        if not packets and self._held_in:
            out, self._held_in = self._held_in, []
        out = self._delay(out, self._in, self._delayed_in)
        if self._delayed_in:
            out += self._due(self._delayed_in, self.clock())
        return out

    def write(self, packet: bytes) -> bool:
        return self.write_batch([packet]) == 1

    def write_batch(self, packets) -> int:
        packets = list(packets)
        out = self._delay(self._apply(packets, self._out, self._held_out), self._out, self._delayed_out)
        if out:
            self.device.write_batch(out)
        return len(packets)

    def close(self) -> None:
        self.device.close()
