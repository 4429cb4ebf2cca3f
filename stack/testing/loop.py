"""An asyncio event loop on virtual time: whenever every task is waiting, the clock jumps to the next timer.

``asyncio.sleep``, ``asyncio.timeout``, ``loop.call_later`` and the stack's TCP timers all read ``loop.time()``,
so they all run on the simulated clock: a minute of simulated traffic costs only the CPU its packets need, and
nothing depends on how fast the machine is. The loop is asyncio's own selector loop; only its selector differs.
When the loop would block, the selector first polls the real file descriptors (an executor's result still
arrives), and otherwise advances the clock by the loop's timeout instead of sleeping. A loop with nothing
scheduled and nothing to wait for is stuck for good: it raises ``SimulationStalled`` rather than hang.
"""

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class SimulationStalled(RuntimeError):
    """Every task waits on something no timer or packet will ever bring: a deadlock in the code under test, or a
    wait without a timeout for a peer that crashed or sits behind a partition."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.outside = 0  # executor jobs in flight: they take no virtual time, so the clock waits for them
        self.failure: BaseException | None = None  # a callback's exception, raised out of the loop at once

    def select(self, timeout: float | None = None) -> list:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if self.outside:
            return super().select(None)  # a thread's result wakes the loop through its self-pipe
        if timeout is None:
            # Nothing is scheduled. With only the loop's self-pipe registered, no socket can ever wake it.
            if len(self.get_map()) > 1:
                return super().select(None)  # real descriptors the user registered: wait for them in real time
            raise SimulationStalled(
                "the simulation is stuck: every task is waiting and no timer is set; give the wait a timeout "
                "(asyncio.timeout) or heal the partition or restart the host it waits for"
            )
        if timeout > 0:
            self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` whose ``time()`` is simulated seconds, starting at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        selector = _VirtualSelector()
        selector.now = start
        super().__init__(selector)
        self._virtual = selector

    def time(self) -> float:
        return self._virtual.now

    def call_exception_handler(self, context: dict) -> None:
        # A callback that raised (the stack's runtime, a protocol's data_received) would only be logged by asyncio,
        # and the simulation would go on wrong or stall; a test must fail on it, with its traceback.
        # (Not a CancelledError: Python 3.11's StreamReaderProtocol asks a cancelled handler task for its exception.)
        exc = context.get("exception")
        if isinstance(exc, asyncio.CancelledError):
            return
        if exc is not None and "handle" in context and self._virtual.failure is None:
            self._virtual.failure = exc
        super().call_exception_handler(context)

    def run_in_executor(self, executor, func, *args) -> asyncio.Future:
        future = super().run_in_executor(executor, func, *args)
        self._track_outside(future)
        return future

    async def shutdown_default_executor(self) -> None:
        self._virtual.outside += 1  # its thread reports back through call_soon_threadsafe
        try:
            await super().shutdown_default_executor()
        finally:
            self._virtual.outside -= 1

    def _track_outside(self, future: asyncio.Future) -> None:
        self._virtual.outside += 1

        def done(_: asyncio.Future) -> None:
            self._virtual.outside -= 1

        future.add_done_callback(done)


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a new ``VirtualTimeLoop``, like ``asyncio.run``: the tasks it leaves are
    cancelled, and the loop is closed."""
    with asyncio.Runner(debug=debug, loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
