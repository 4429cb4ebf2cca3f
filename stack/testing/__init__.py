"""Deterministic simulation for tests, benchmarks and users' own property tests.

Two levels, one clock model (virtual time that jumps from deadline to deadline, seeded faults):
- asyncio applications, unchanged: ``SimNetwork`` of ``SimHost``s (each with the ``start_server`` /
  ``open_connection`` API of ``stack.aio.Stack``) on a ``VirtualTimeLoop``, started by ``run(main())``; with
  hypothesis, ``stack.testing.strategies`` (network conditions, fault schedules) and ``stack.testing.machine``
  (``SimulationMachine``, a base for state machines). See docs/testing.md.
- sans-I/O hosts: ``Network`` drives ``Host`` objects directly, for the stack's own protocol tests.
"""

from .bulk import BulkEndpoint
from .link import FaultyLink, LinkFaults
from .loop import SimulationStalled, VirtualTimeLoop, run
from .network import SimDevice, SimHost, SimNetwork
from .sim import Network

__all__ = [
    "BulkEndpoint",
    "FaultyLink",
    "LinkFaults",
    "Network",
    "SimDevice",
    "SimHost",
    "SimNetwork",
    "SimulationStalled",
    "VirtualTimeLoop",
    "run",
]
