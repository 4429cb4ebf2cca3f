"""The public simulation toolkit: virtual time, the simulated network's links, partitions, crashes and captures,
with unmodified asyncio stream code on top."""

import asyncio
import dataclasses
import hashlib

import pytest
from hypothesis import given

from stack.testing import LinkFaults, SimNetwork, SimulationStalled, VirtualTimeLoop, run
from stack.testing.strategies import FaultEvent, fault_schedules, link_faults, play


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def echo_pair(net: SimNetwork, **client_options):
    server = net.add_host("server", "10.0.0.1")
    client = net.add_host("client", "10.0.0.2", **client_options)
    await server.start_server(echo, "10.0.0.1", 7)
    return server, client


def pattern(n: int) -> bytes:
    return hashlib.sha256(b"seed").digest() * (n // 32) + b"x" * (n % 32)


async def round_trip(client, payload: bytes, *, within: float = 600.0) -> bytes:
    reader, writer = await client.open_connection("10.0.0.1", 7)
    writer.write(payload)
    writer.write_eof()
    async with asyncio.timeout(within):
        return await reader.read()


# -- the clock ----------------------------------------------------------------------------------------------


def test_an_hour_of_sleeping_passes_in_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.sleep(10)
        return loop.time()

    assert run(main()) == 3605.0


def test_a_wait_nothing_can_end_raises_instead_of_hanging():
    async def main():
        await asyncio.Event().wait()

    with pytest.raises(SimulationStalled, match="give the wait a timeout"):
        run(main())


def test_an_exception_in_a_callback_fails_the_run():
    class Broken(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            raise ValueError("the protocol under test is broken")

    async def main():
        net = SimNetwork()
        server = net.add_host("server", "10.0.0.1")
        client = net.add_host("client", "10.0.0.2")
        await server.create_server(Broken, "10.0.0.1", 9)
        _, writer = await client.open_connection("10.0.0.1", 9)
        writer.write(b"x")
        await asyncio.sleep(1)

    with pytest.raises(ValueError, match="protocol under test is broken"):
        run(main())


def test_executor_work_takes_no_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, sum, range(1000))
        return result, loop.time()

    assert run(main()) == (499500, 0.0)


def test_the_network_refuses_a_real_time_loop():
    async def main():
        SimNetwork().add_host("a", "10.0.0.1")

    with pytest.raises(RuntimeError, match=r"stack.testing.run"):
        asyncio.run(main())


def test_building_mistakes_name_the_fix():
    async def main():
        net = SimNetwork()
        net.add_host("a", "10.0.0.1")
        with pytest.raises(ValueError, match="already on this network"):
            net.add_host("a", "10.0.0.2")
        with pytest.raises(ValueError, match=r"already belongs to host 'a'.*route\(\)"):
            net.add_host("b", "10.0.0.1")
        with pytest.raises(ValueError, match="needs at least one address"):
            net.add_host("c")
        with pytest.raises(KeyError, match="no host named 'zz'"):
            net.set_link("a", "zz", loss=0.1)

    run(main())


# -- links ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tso", [False, True])
def test_a_megabyte_round_trip_is_exact_through_every_fault(tso):
    faults = LinkFaults(loss=0.03, duplicate=0.02, reorder=0.05, corrupt=0.01, delay=0.01, jitter=0.002, bandwidth=5e6)

    async def main():
        net = SimNetwork(seed=5, link=faults)
        _, client = await echo_pair(net, tso=tso)
        payload = pattern(1_000_000)
        assert await round_trip(client, payload) == payload
        links = net._links.values()
        return sum(link.faults.corrupted for link in links), sum(link.faults.lost for link in links), net

    corrupted, lost, net = run(main())
    assert corrupted > 0 and lost > 0
    assert (net.super_segments > 0) == tso


def capture_digest(tmp_path, seed: int, name: str) -> bytes:
    path = tmp_path / f"{name}.pcap"

    async def main():
        net = SimNetwork(seed=seed, link=LinkFaults(loss=0.05, reorder=0.05, delay=0.003, jitter=0.001, bandwidth=2e6))
        _, client = await echo_pair(net)
        net.capture("client", "server", str(path))
        payload = pattern(200_000)
        assert await round_trip(client, payload) == payload
        net.close()

    run(main())
    return path.read_bytes()


def test_the_same_seed_gives_the_same_capture_byte_for_byte(tmp_path):
    first, second = capture_digest(tmp_path, 11, "a"), capture_digest(tmp_path, 11, "b")
    assert len(first) > 200_000 and first == second
    assert capture_digest(tmp_path, 12, "c") != first  # and the seed matters


def test_changing_a_link_changes_the_round_trip_time():
    async def main():
        net = SimNetwork(link=LinkFaults(delay=0.01))
        _, client = await echo_pair(net)
        loop = asyncio.get_running_loop()
        reader, writer = await client.open_connection("10.0.0.1", 7)

        async def rtt() -> float:
            start = loop.time()
            writer.write(b"ping")
            await reader.readexactly(4)
            return loop.time() - start

        before = await rtt()
        net.set_link("client", "server", delay=0.1)
        after = await rtt()
        one_way = dataclasses.replace(net.link_faults("server", "client"))
        return before, after, one_way.delay

    before, after, delay = run(main())
    assert before == pytest.approx(0.02, abs=1e-6) and after == pytest.approx(0.2, abs=1e-6) and delay == 0.1


def test_a_partition_stops_traffic_until_healed_and_tcp_carries_on():
    async def main():
        net = SimNetwork()
        _, client = await echo_pair(net)
        reader, writer = await client.open_connection("10.0.0.1", 7)
        net.partition("client", "server")
        writer.write(b"held back")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(20):
                await reader.readexactly(9)
        assert net.partitioned > 0
        net.heal()
        async with asyncio.timeout(120):  # the next retransmission gets through
            return await reader.readexactly(9)

    assert run(main()) == b"held back"


def test_a_crash_sends_nothing_and_a_restart_is_a_new_host():
    async def main():
        net = SimNetwork()
        started = []

        async def serve(host):
            started.append(host.incarnation)
            await host.start_server(echo, "10.0.0.1", 7)
            await asyncio.sleep(3600)  # a task of the host: the crash cancels it

        server = net.add_host("server", "10.0.0.1", main=serve)
        client = net.add_host("client", "10.0.0.2")
        await asyncio.sleep(0)
        reader, writer = await client.open_connection("10.0.0.1", 7)
        server.crash()
        await asyncio.sleep(5)
        assert not reader.at_eof() and reader.exception() is None  # no RST, no FIN: the client cannot know
        with pytest.raises(RuntimeError, match="restart"):
            await server.open_connection("10.0.0.2", 1)
        server.restart()
        await asyncio.sleep(0)
        assert await round_trip(client, b"hello") == b"hello"  # the new incarnation serves
        writer.write(b"to the old connection")
        with pytest.raises(ConnectionResetError):  # which the new incarnation does not know: RST
            async with asyncio.timeout(60):
                await reader.read()
        return started, net.errors

    started, errors = run(main())
    assert started == [1, 2] and errors == []


def test_datagrams_arrive_with_their_source_and_a_corrupted_one_is_dropped():
    async def main():
        net = SimNetwork(link=LinkFaults(corrupt=0.5))
        a = net.add_host("a", "10.0.0.1")
        b = net.add_host("b", "10.0.0.2", datagram_addresses=["10.9.0.2"])
        got = []
        b.on_datagram = lambda data, source: got.append((data, source))
        for i in range(40):
            assert a.send_datagram(b"datagram %d" % i, ("10.0.0.1", 5000), ("10.9.0.2", 6000))
        assert not a.send_datagram(b"nobody", ("10.0.0.1", 5000), ("10.9.9.9", 6000))
        await asyncio.sleep(1)
        return got, net

    got, net = run(main())
    assert 0 < len(got) < 40 and len(got) + net.bad_datagrams == 40 and net.unroutable == 1
    assert all(source == ("10.0.0.1", 5000) and data.startswith(b"datagram ") for data, source in got)


def test_ipv6_hosts():
    async def main():
        net = SimNetwork()
        server = net.add_host("server", "fd00::1")
        client = net.add_host("client", "fd00::2")
        await server.start_server(echo, "fd00::1", 7)
        reader, writer = await client.open_connection("fd00::1", 7)
        writer.write(b"six")
        writer.write_eof()
        return await reader.read()

    assert run(main()) == b"six"


# -- hypothesis ---------------------------------------------------------------------------------------------


@given(schedule=fault_schedules(["a", "b", "c"], horizon=3, crashable=["b"], max_events=8))
def test_every_schedule_ends_healed_and_restarted(schedule):
    assert schedule == sorted(schedule)
    partitions = [e for e in schedule if e.action == "partition"]
    if partitions:  # each is healed, at the horizon, after it began
        assert FaultEvent(3, "heal") in schedule and all(e.at < 3 for e in partitions)
    crashes = [e for e in schedule if e.action == "crash"]
    restarts = [e for e in schedule if e.action == "restart"]
    assert len(crashes) == len(restarts) <= 1
    for crash, restart in zip(crashes, restarts):
        assert crash.hosts == restart.hosts == ("b",) and crash.at <= restart.at <= 3


@given(conditions=link_faults(max_loss=0.1), schedule=fault_schedules(["client", "server"], horizon=2))
def test_echo_under_drawn_conditions_and_schedules(conditions, schedule):
    async def main():
        net = SimNetwork(seed=1, link=conditions)
        _, client = await echo_pair(net)
        faults = asyncio.create_task(play(net, schedule))
        payload = pattern(20_000)
        assert await round_trip(client, payload) == payload
        await faults

    run(main())


def test_the_loop_class_is_public_for_other_runners():
    loop = VirtualTimeLoop(start=100.0)
    try:
        assert loop.run_until_complete(asyncio.sleep(1, result="done")) == "done"
        assert loop.time() == 101.0
    finally:
        loop.close()


def test_link_faults_print_only_what_differs():
    assert repr(LinkFaults()) == "LinkFaults()"
    assert repr(LinkFaults(loss=0.1, bandwidth=1e6)) == "LinkFaults(loss=0.1, bandwidth=1000000.0)"
