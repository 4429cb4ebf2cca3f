"""appliance.testing.SimCluster: real AnycastStacks behind a simulated router, under asyncio application code."""

import asyncio

import pytest

from appliance.testing import SimCluster
from stack.testing import LinkFaults, SimNetwork, run

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB


async def download(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    for start in range(0, len(PAYLOAD), 65536):
        writer.write(PAYLOAD[start : start + 65536])
        await writer.drain()
    writer.close()


async def start(net: SimNetwork, **options) -> tuple[SimCluster, asyncio.StreamReader, asyncio.StreamWriter]:
    cluster = SimCluster(net, nodes=3, headroom=1 << 21, hwm_margin=1 << 19, **options)
    await cluster.start_server(download, 8080)
    cluster.move(1)
    client = net.add_host("client", "198.51.100.1")
    reader, writer = await client.open_connection(cluster.service, 8080)
    writer.write(b"go\n")
    return cluster, reader, writer  # (a StreamWriter closes its connection when collected)


def test_a_moved_route_is_forwarded_to_the_owner_and_the_download_is_exact():
    async def main():
        net = SimNetwork(seed=2, link=LinkFaults(delay=0.002, bandwidth=2.5e6))
        cluster, reader, _writer = await start(net)
        received = asyncio.create_task(reader.read())  # read all along: an unread stream closes the window
        await asyncio.sleep(0.2)
        cluster.move(2)
        await asyncio.sleep(0.2)
        cluster.move(3)
        async with asyncio.timeout(60):
            data = await received
        return data, cluster

    data, cluster = run(main())
    counters = {i: stack.node.counters for i, stack in cluster.stacks.items()}
    assert data == PAYLOAD and cluster.moves == 2
    assert counters[2]["forwarded_out"] > 0 and counters[3]["forwarded_out"] > 0
    # All of it reached the owner, but for the last few still in flight when the download ended.
    assert 0 <= counters[2]["forwarded_out"] + counters[3]["forwarded_out"] - counters[1]["forwarded_in"] <= 4


def test_the_tunnel_survives_loss_between_the_nodes():
    async def main():
        net = SimNetwork(seed=3, link=LinkFaults(delay=0.002, bandwidth=2.5e6))
        cluster, reader, _writer = await start(net)
        received = asyncio.create_task(reader.read())
        for a, b in (("node1", "node2"), ("node1", "node3"), ("node2", "node3")):
            net.set_link(a, b, loss=0.2, reorder=0.1)
        await asyncio.sleep(0.1)
        cluster.move(2)
        async with asyncio.timeout(120):
            return await received, cluster.stacks[2].node.counters["forwarded_out"]

    data, forwarded = run(main())
    assert data == PAYLOAD and forwarded > 0


def test_a_restarted_node_serves_again_with_a_new_incarnation():
    async def main():
        net = SimNetwork(seed=4)
        cluster, reader, _writer = await start(net)
        async with asyncio.timeout(60):
            assert await reader.read() == PAYLOAD
        cluster.kill(1)
        await asyncio.sleep(1)
        cluster.restart(1)
        await asyncio.sleep(0)
        client = net.add_host("client2", "198.51.100.2")
        reader, writer = await client.open_connection(cluster.service, 8080)
        writer.write(b"again\n")
        async with asyncio.timeout(60):
            data = await reader.read()
        return data, cluster.hosts[1].incarnation, cluster.stacks[1].node.incarnation

    data, host_incarnation, node_incarnation = run(main())
    assert data == PAYLOAD and host_incarnation == node_incarnation == 2


def test_the_owner_dying_ends_its_connections_and_nothing_else():
    async def main():
        net = SimNetwork(seed=5, link=LinkFaults(delay=0.002, bandwidth=2.5e6))
        cluster, reader, writer = await start(net)
        received = asyncio.create_task(reader.read())
        await asyncio.sleep(0.2)
        cluster.kill(1)  # the owner: routing withdraws it, and what the client sends next lands on 2 or 3
        writer.write(b"anyone there?\n")  # (a client that only listens would never learn: no keep-alive)
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(60):
                await received

    run(main())


def test_a_syn_cookie_ack_that_lands_on_another_node_reaches_the_owner():
    """Node 1's backlog is full, so it answers with a SYN cookie from its home range; the route moves before the
    client's ACK, which node 2 forwards by its acknowledgment number, and node 1 rebuilds the connection."""

    async def main():
        net = SimNetwork(seed=6, link=LinkFaults(delay=0.005, bandwidth=2.5e6))
        cluster = SimCluster(net, nodes=3, headroom=1 << 21, hwm_margin=1 << 19)
        await cluster.start_server(download, 8080, backlog=1)
        cluster.move(1)
        silent = net.add_host("silent", "198.51.100.9")
        silent.spawn(silent.open_connection(cluster.service, 8080))
        await asyncio.sleep(0.001)
        silent.crash()  # its half-open connection on node 1 fills the backlog
        cookies = cluster.stacks[1].node.host.syn_cookies

        async def move_once_the_cookie_is_out() -> None:
            while cookies.made == 0:
                await asyncio.sleep(0.0001)
            cluster.move(2)

        mover = asyncio.create_task(move_once_the_cookie_is_out())
        client = net.add_host("client", "198.51.100.1")
        reader, writer = await client.open_connection(cluster.service, 8080)
        writer.write(b"go\n")
        async with asyncio.timeout(60):
            data = await reader.read()
        await mover
        return data, cookies, cluster.stacks[2].node.counters

    data, cookies, node2 = run(main())
    assert data == PAYLOAD
    assert cookies.made == 1 and cookies.accepted == 1 and node2["forwarded_out"] > 0
