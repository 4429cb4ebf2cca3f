"""A state machine test of the key-value server on the simulated network: hypothesis interleaves requests with
the network rules of ``SimulationMachine`` (time passing, link conditions, partitions) and checks every reply
against a dict. On the planted bug it finds a failing schedule and shrinks it to a few steps."""

import asyncio

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test
from kv_server import KeyValueClient, KeyValueServer

from stack.testing.machine import SimulationMachine

keys = st.sampled_from([b"a", b"b", b"c"])
values = st.builds(lambda n, byte: bytes([byte]) * n, st.integers(0, 5000), st.integers(0, 255))
REPLY_WITHIN = 120.0  # simulated seconds: a reply can wait out any partition the rules make


class KeyValueMachine(SimulationMachine):
    planted_bug = False

    async def setup(self) -> None:
        self.model: dict[bytes, bytes] = {}
        server = KeyValueServer(planted_bug=self.planted_bug)
        self.server = self.net.add_host("server", "10.0.0.1")
        self.client_host = self.net.add_host("client", "10.0.0.2")
        await self.server.start_server(server.handle, "10.0.0.1", 6379)
        self.client = await KeyValueClient.connect(self.client_host.open_connection, "10.0.0.1", 6379)

    def request(self, coroutine):
        """Every request is answered within REPLY_WITHIN simulated seconds: the property, not just a guard."""

        async def bounded():
            try:
                async with asyncio.timeout(REPLY_WITHIN):
                    return await coroutine
            except TimeoutError:
                raise AssertionError(f"no reply within {REPLY_WITHIN:.0f} s") from None

        return self.run(bounded())

    @rule(key=keys, value=values)
    def set(self, key: bytes, value: bytes) -> None:
        self.request(self.client.set(key, value))
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.request(self.client.delete(key))
        self.model.pop(key, None)

    @rule(key=keys)
    def get(self, key: bytes) -> None:
        got = self.request(self.client.get(key))
        expected = self.model.get(key)
        if got != expected:  # lengths, not a diff of long values
            raise AssertionError(f"GET {key!r}: {describe(got)}, expected {describe(expected)}")


def describe(value: bytes | None) -> str:
    return "none" if value is None else f"{len(value)} bytes"


class BuggyKeyValueMachine(KeyValueMachine):
    planted_bug = True


SETTINGS = settings(max_examples=30, stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck))


def test_key_value_server_keeps_its_data_under_any_schedule():
    run_state_machine_as_test(KeyValueMachine, settings=SETTINGS)


def test_planted_partial_read_bug_is_found_and_shrunk():
    with pytest.raises((AssertionError, ConnectionError)) as failure:
        # One bug, shrunk: its symptoms (a wrong value, a garbled reply, a request never answered) are all one cause.
        one_bug = settings(SETTINGS, report_multiple_bugs=False, derandomize=True)
        run_state_machine_as_test(BuggyKeyValueMachine, settings=one_bug)
    steps = [line for line in getattr(failure.value, "__notes__", []) if line.startswith("state.")]
    assert 1 <= len(steps) <= 6, failure.value.__notes__
    print("\n".join(failure.value.__notes__))
