"""The asyncio API over two stacks joined by an in-memory device pair: existing asyncio code runs unchanged."""

import asyncio
import hashlib
import os

import pytest

from stack import Stack
from tunnel.memory import MemoryDevice

A, B = "10.9.0.1/24", "10.9.0.2/24"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def two_stacks():
    left, right = MemoryDevice.pair()
    return Stack(left, [A]), Stack(right, [B])


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_streams_echo_a_megabyte_byte_exact():
    async def main():
        client, server = await two_stacks()
        async with server, client:
            srv = await server.start_server(echo, "10.9.0.2", 7)
            reader, writer = await client.open_connection("10.9.0.2", 7)
            payload = os.urandom(1_000_000)
            writer.write(payload)
            writer.write_eof()
            received = await reader.read()
            assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
            assert writer.get_extra_info("peername") == ("10.9.0.2", 7)
            assert writer.get_extra_info("sockname")[0] == "10.9.0.1"
            writer.close()
            await writer.wait_closed()
            srv.close()
            await srv.wait_closed()

    run(main())


def test_protocol_api_sees_connection_made_data_eof_and_lost():
    events = []

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport):
            events.append("made")
            self.transport = transport

        def data_received(self, data):
            events.append(data)

        def eof_received(self):
            events.append("eof")
            self.transport.write(b"bye")
            return False  # asyncio: close after EOF

        def connection_lost(self, exc):
            events.append(("lost", exc))

    async def main():
        client, server = await two_stacks()
        async with server, client:
            await server.create_server(Recorder, "10.9.0.2", 80)
            transport, _ = await client.create_connection(asyncio.Protocol, "10.9.0.2", 80)
            assert transport.can_write_eof()
            transport.write(b"hello")
            transport.write_eof()
            for _ in range(200):
                await asyncio.sleep(0.01)
                if any(isinstance(e, tuple) for e in events):
                    break

    run(main())
    assert events[0] == "made" and events[1] == b"hello" and events[2] == "eof"
    assert events[-1] == ("lost", None)


def test_connecting_to_a_closed_port_raises_connection_refused():
    async def main():
        client, server = await two_stacks()
        async with server, client:
            with pytest.raises(ConnectionRefusedError):
                await client.open_connection("10.9.0.2", 9)

    run(main())


def test_abort_reaches_the_peer_as_connection_reset():
    async def main():
        client, server = await two_stacks()
        accepted = asyncio.get_running_loop().create_future()

        async def hold(reader, writer):
            accepted.set_result((reader, writer))

        async with server, client:
            await server.start_server(hold, "10.9.0.2", 80)
            _, writer = await client.open_connection("10.9.0.2", 80)
            server_reader, _ = await accepted
            writer.transport.abort()
            with pytest.raises(ConnectionResetError):
                await server_reader.read()

    run(main())


def test_a_reader_that_stops_reading_stalls_the_writer_then_everything_arrives():
    """Flow control end to end: StreamReader pauses our transport, our window closes, the peer's drain()
    blocks; reading again reopens the window."""

    async def main():
        client, server = await two_stacks()
        accepted = asyncio.get_running_loop().create_future()

        async def hold(reader, writer):
            accepted.set_result(reader)

        async with server, client:
            await server.start_server(hold, "10.9.0.2", 80, limit=16 * 1024)
            _, writer = await client.open_connection("10.9.0.2", 80)
            server_reader = await accepted
            payload = os.urandom(4_000_000)
            writer.write(payload)
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0.5)
            assert not drain.done(), "4 MB cannot fit in the buffers of a reader that reads nothing"
            conn = writer.transport.connection
            assert conn.tx.snd_wnd == 0 or conn.tx.free_space == 0
            received = bytearray()
            while len(received) < len(payload):
                received += await server_reader.read(1 << 20)
            await drain
            assert bytes(received) == payload

    run(main())


def test_server_behaves_like_asyncio_server():
    async def main():
        client, server = await two_stacks()
        async with server, client:
            srv = await server.start_server(echo, "10.9.0.2", 7, start_serving=False)
            assert not srv.is_serving()
            forever = asyncio.ensure_future(srv.serve_forever())
            await asyncio.sleep(0)
            assert srv.is_serving()
            reader, writer = await client.open_connection("10.9.0.2", 7)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            forever.cancel()
            with pytest.raises(asyncio.CancelledError):
                await forever
            assert not srv.is_serving()
            with pytest.raises(ConnectionRefusedError):
                await client.open_connection("10.9.0.2", 7)
            with pytest.raises(OSError, match="already listening"):
                await server.start_server(echo, "10.9.0.2", 8)
                await server.start_server(echo, "10.9.0.2", 8)

    run(main())
