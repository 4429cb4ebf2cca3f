"""A base for hypothesis state machines that property-test a protocol on a ``SimNetwork``.

Subclass ``SimulationMachine``, build the hosts and start the servers in ``setup`` (a coroutine, run on the
machine's virtual-time loop), and add rules that drive the application and invariants that check it. The base
brings rules that move time forward, change link conditions, partition two hosts for a while, and crash and
restart the hosts named in ``crashable``; hypothesis interleaves them with yours and shrinks a failure to the
shortest schedule that still fails. ``self.run(coroutine)`` runs your coroutine to completion inside a rule.

    class EchoMachine(SimulationMachine):
        async def setup(self):
            self.server = self.net.add_host("server", "10.0.0.1", main=serve_echo)
            self.client = self.net.add_host("client", "10.0.0.2")
            self.reader, self.writer = await self.client.open_connection("10.0.0.1", 7)

        @rule(data=st.binary(min_size=1))
        def echo(self, data):
            assert self.run(self.round_trip(data)) == data

    TestEcho = EchoMachine.TestCase
"""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .link import LinkFaults
from .loop import VirtualTimeLoop
from .network import DEFAULT_LINK, SimNetwork
from .strategies import link_faults

T = TypeVar("T")


class SimulationMachine(RuleBasedStateMachine):
    seed: int | str = 0  # the network's seed: its links' dice (the rules choose the faults themselves)
    link: LinkFaults = DEFAULT_LINK  # every link's conditions at the start
    crashable: tuple[str, ...] = ()  # hosts the crash rule may power-cycle (their ``main`` runs again)
    conditions = link_faults()  # what ``set_link_conditions`` draws

    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        self.net = SimNetwork(self.seed, link=self.link)
        try:
            self.run(self._start())
        except BaseException:
            self._close()
            raise

    async def _start(self) -> None:
        _ = self.net.loop  # binds the network to this loop
        await self.setup()

    async def setup(self) -> None:
        """Add hosts, start servers, open connections: whatever every run starts from."""

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the simulated network until it completes; everything else runs meanwhile."""
        return self.loop.run_until_complete(awaitable)

    def _pair(self, data: st.DataObject) -> tuple[str, str]:
        names = sorted(self.net.hosts)
        return tuple(data.draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True), label="hosts"))

    # -- the network's rules --------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0]))
    def advance_time(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    @precondition(lambda self: len(self.net.hosts) >= 2)
    @rule(data=st.data())
    def set_link_conditions(self, data: st.DataObject) -> None:
        a, b = self._pair(data)
        self.net.set_link(a, b, data.draw(self.conditions, label="conditions"))

    @precondition(lambda self: len(self.net.hosts) >= 2)
    @rule(data=st.data(), seconds=st.sampled_from([0.1, 1.0, 5.0]))
    def partition_for(self, data: st.DataObject, seconds: float) -> None:
        a, b = self._pair(data)
        self.net.partition(a, b)
        self.run(asyncio.sleep(seconds))
        self.net.heal(a)

    @precondition(lambda self: bool(self.crashable))
    @rule(data=st.data(), seconds=st.sampled_from([0.0, 0.5, 5.0]))
    def crash_and_restart(self, data: st.DataObject, seconds: float) -> None:
        host = self.net.host(data.draw(st.sampled_from(self.crashable), label="host"))
        host.crash()
        self.run(asyncio.sleep(seconds))
        host.restart()
        self.run(asyncio.sleep(0))  # its main starts

    @invariant()
    def no_task_failed(self) -> None:
        if self.net.errors:
            name, exc = self.net.errors[0]
            raise AssertionError(f"a task on host {name!r} failed: {exc!r}") from exc

    def teardown(self) -> None:
        self._close()

    def _close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.net.close()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
