"""Hypothesis strategies for network conditions and fault schedules on a ``SimNetwork``.

    @given(conditions=link_faults(), schedule=fault_schedules(["client", "server"]))
    def test_my_server(conditions, schedule):
        async def main():
            net = SimNetwork(seed=0, link=conditions)
            ...
            net.loop.create_task(play(net, schedule))   # the faults happen while the test's traffic runs
        stack.testing.run(main())

Times are whole milliseconds and probabilities whole percents, so a shrunk example reads plainly; everything
shrinks towards a perfect network (no loss, no delay, no faults).
"""

import asyncio
import dataclasses
from collections.abc import Sequence

from hypothesis import strategies as st

from .link import LinkFaults
from .network import SimNetwork


def _percent(most: float) -> st.SearchStrategy[float]:
    return st.integers(0, round(most * 100)).map(lambda p: p / 100)


def _millis(most: float) -> st.SearchStrategy[float]:
    return st.integers(0, round(most * 1000)).map(lambda ms: ms / 1000)


@st.composite
def link_faults(
    draw,
    *,
    max_loss: float = 0.2,
    max_duplicate: float = 0.1,
    max_reorder: float = 0.2,
    max_corrupt: float = 0.05,
    max_delay: float = 0.1,
    max_jitter: float = 0.02,
    bandwidths: Sequence[float | None] = (None, 125e6, 12.5e6, 1.25e6),
) -> LinkFaults:
    """Conditions of one link: each fault up to its maximum (0 turns it off), a delay and jitter, and a bandwidth
    in bytes/s from ``bandwidths`` (None: no serialisation delay; the default list runs 1 Gbit/s to 10 Mbit/s)."""
    return LinkFaults(
        loss=draw(_percent(max_loss)),
        duplicate=draw(_percent(max_duplicate)),
        reorder=draw(_percent(max_reorder)),
        corrupt=draw(_percent(max_corrupt)),
        delay=draw(_millis(max_delay)),
        jitter=draw(_millis(max_jitter)),
        bandwidth=draw(st.sampled_from(list(bandwidths))),
    )


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class FaultEvent:
    """At ``at`` simulated seconds from the start of ``play``: "partition" ``hosts`` (two names) from each
    other, "heal" every partition, "set_link" between ``hosts`` to ``faults``, or "crash" / "restart" the host
    ``hosts[0]``."""

    at: float
    action: str
    hosts: tuple[str, ...] = ()
    faults: LinkFaults | None = dataclasses.field(default=None, compare=False)

    def __repr__(self) -> str:
        parts = [self.at, self.action, self.hosts] + ([self.faults] if self.faults is not None else [])
        return f"FaultEvent({', '.join(map(repr, parts))})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # hypothesis's pretty printer
        printer.text(repr(self))

    def apply(self, net: SimNetwork) -> None:
        if self.action == "partition":
            net.partition(*self.hosts)
        elif self.action == "heal":
            net.heal()
        elif self.action == "set_link":
            net.set_link(*self.hosts, self.faults)
        elif self.action == "crash":
            net.host(self.hosts[0]).crash()
        elif self.action == "restart":
            host = net.host(self.hosts[0])
            if not host.up:
                host.restart()
        else:
            raise ValueError(f"unknown fault action {self.action!r}: use partition, heal, set_link, crash or restart")


@st.composite
def fault_schedules(
    draw,
    hosts: Sequence[str],
    *,
    horizon: float = 10.0,
    max_events: int = 6,
    crashable: Sequence[str] = (),
    conditions: st.SearchStrategy[LinkFaults] | None = None,
) -> list[FaultEvent]:
    """Up to ``max_events`` faults at times within ``horizon`` seconds, between the given ``hosts``: partitions,
    heals and link changes (to ``conditions``, default ``link_faults()``), and crashes of the ``crashable``
    hosts. Every partition is healed and every crashed host restarted by ``horizon``, so a correct protocol with
    retries can always finish; sorted by time."""
    if len(hosts) < 2:
        raise ValueError("fault_schedules() needs at least two host names to put faults between")
    conditions = conditions if conditions is not None else link_faults()
    pairs = st.lists(st.sampled_from(list(hosts)), min_size=2, max_size=2, unique=True).map(tuple)
    kinds = ["partition", "set_link"] + (["crash"] if crashable else [])
    events, crashed = [], set()
    before_horizon = st.integers(0, max(round(horizon * 1000) - 1, 0)).map(lambda ms: ms / 1000)
    for _ in range(draw(st.integers(0, max_events))):
        at = draw(before_horizon)
        kind = draw(st.sampled_from(kinds))
        if kind == "crash":
            name = draw(st.sampled_from(list(crashable)))
            if name in crashed:
                continue
            crashed.add(name)
            events.append(FaultEvent(at, "crash", (name,)))
            back = draw(st.integers(round(at * 1000), round(horizon * 1000))) / 1000
            events.append(FaultEvent(back, "restart", (name,)))
        elif kind == "partition":
            events.append(FaultEvent(at, "partition", draw(pairs)))
        else:
            events.append(FaultEvent(at, "set_link", draw(pairs), draw(conditions)))
    if any(e.action == "partition" for e in events):
        events.append(FaultEvent(horizon, "heal"))
    return sorted(events)


async def play(net: SimNetwork, schedule: Sequence[FaultEvent]) -> None:
    """Apply ``schedule`` to ``net`` on the simulated clock (run it as a task beside the test's traffic)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for event in sorted(schedule):
        delay = start + event.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        event.apply(net)
