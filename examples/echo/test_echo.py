"""Property tests of the echo server on the simulated network: hypothesis chooses the lines, the link conditions
and a schedule of faults; the simulation runs in virtual time and every failure replays from its example."""

import asyncio

import pytest
from echo_server import handle_echo, handle_echo_with_bug
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.testing import LinkFaults, SimNetwork, run
from stack.testing.strategies import fault_schedules, link_faults, play


def _line(length: int, pattern: bytes) -> bytes:
    return (pattern.replace(b"\n", b" ") * length)[:length]


# Lengths drawn as numbers, so long lines (several segments) are as likely as short ones.
line_strategy = st.builds(_line, st.integers(0, 4000), st.binary(min_size=1, max_size=8))
lines_strategy = st.lists(line_strategy, min_size=1, max_size=4)


def mismatch(got: bytes, expected: bytes) -> int:
    return next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))


def echo_round_trip(handler, lines: list[bytes], conditions, schedule) -> None:
    async def main() -> None:
        net = SimNetwork(seed=0, link=conditions)
        server = net.add_host("server", "10.0.0.1")
        client = net.add_host("client", "10.0.0.2")
        await server.start_server(handler, "10.0.0.1", 7)
        faults = asyncio.create_task(play(net, schedule))
        reader, writer = await client.open_connection("10.0.0.1", 7)
        for line in lines:
            writer.write(line + b"\n")
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(600):  # simulated seconds: far beyond any retransmission the faults cause
            echoed = await reader.read()
        await faults
        expected = b"".join(line + b"\n" for line in lines)
        if echoed != expected:  # not a bare assert: pytest's diff of two long byte strings takes minutes
            wrong = mismatch(echoed, expected)
            raise AssertionError(f"echoed {len(echoed)} of {len(expected)} bytes, wrong from byte {wrong}")

    run(main())


def test_echo_over_a_lossy_link():
    echo_round_trip(handle_echo, [b"hello", b"x" * 5000], LinkFaults(loss=0.1, delay=0.02), schedule=[])


def echo_property(handler, **options):
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], **options)
    @given(lines=lines_strategy, conditions=link_faults(), schedule=fault_schedules(["client", "server"], horizon=5))
    def check(lines, conditions, schedule):
        echo_round_trip(handler, lines, conditions, schedule)

    return check


def test_echo_survives_any_network():
    echo_property(handle_echo)()


def test_planted_bug_is_found_and_shrunk():
    with pytest.raises(AssertionError) as failure:
        echo_property(handle_echo_with_bug, derandomize=True)()  # the same search every run: CI cannot flake
    report = "\n".join(getattr(failure.value, "__notes__", []))
    assert "check(" in report and "schedule=" in report, report
    print(report)  # what hypothesis shrank it to (shown with pytest -s)
