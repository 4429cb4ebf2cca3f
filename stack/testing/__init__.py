"""Deterministic simulation for tests, benchmarks and users' own property tests: seeded faulty links and a
network of sans-I/O hosts driven by a virtual clock that jumps from deadline to deadline."""

from .bulk import BulkEndpoint
from .link import FaultyLink, LinkFaults
from .sim import Network

__all__ = ["BulkEndpoint", "FaultyLink", "LinkFaults", "Network"]
