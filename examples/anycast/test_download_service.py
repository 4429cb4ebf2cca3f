"""Property test of a service on an anycast cluster in simulation: real anycast nodes behind a simulated router,
while hypothesis moves the clients' routes between nodes and crashes nodes that own nothing. Every download must
arrive exact: the node a stranger's segments land on forwards them to the owner."""

import asyncio

from download_service import expected, serve_download
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.testing import SimCluster
from stack.testing import LinkFaults, SimNetwork, run

NODES = 3
moves = st.lists(st.tuples(st.integers(1, 400), st.integers(1, NODES)), max_size=8)  # (after ms, to node)


sizes = st.lists(st.integers(100, 3000).map(lambda kb: kb * 1000 + 7), min_size=1, max_size=3)  # long enough to move


@settings(max_examples=15, deadline=None)
@given(sizes=sizes, moves=moves, crash=st.booleans())
def test_downloads_are_exact_while_routes_move(sizes, moves, crash):
    async def main():
        net = SimNetwork(seed=0, link=LinkFaults(delay=0.005, bandwidth=1.25e6))  # 10 Mbit/s: moves land mid-way
        # A small headroom, so that even these downloads run past the high-water mark and get claimed.
        cluster = SimCluster(net, nodes=NODES, headroom=1 << 21, hwm_margin=1 << 19)
        await cluster.start_server(serve_download, 8080)
        cluster.move(1)  # every connection starts on node 1, which owns it

        async def download(index: int, size: int) -> bytes:
            client = net.add_host(f"client{index}", f"198.51.100.{index + 1}")
            reader, writer = await client.open_connection(cluster.service, 8080)
            writer.write(b"%d\n" % size)
            async with asyncio.timeout(300):
                return await reader.read()

        async def routing() -> None:
            for after_ms, node in moves:
                await asyncio.sleep(after_ms / 1000)
                cluster.move(node)
            if crash:
                cluster.kill(3)  # node 3 owns nothing: nobody's connection may notice

        flaps = asyncio.create_task(routing())
        got = await asyncio.gather(*(download(i, size) for i, size in enumerate(sizes)))
        await flaps
        return got, net.errors

    got, errors = run(main())
    assert errors == []
    for size, data in zip(sizes, got):
        assert len(data) == size and data == expected(size), f"{len(data)} of {size} bytes"
