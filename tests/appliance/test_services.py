"""The built-in services on our stack: a client Stack and a node Stack joined in memory, and for the proxy a kernel
asyncio server on 127.0.0.1 as the backend. No root needed."""

import asyncio
import hashlib
import os
import socket
import struct
import sys

import pytest
import structlog
from structlog.testing import capture_logs

from appliance import services
from appliance.proxy_protocol import header_length, parse_v2
from appliance.services import Proxy, discard, echo, load_handler
from stack import Stack
from tunnel.memory import MemoryDevice

from .cluster_apps import pattern

CLIENT, NODE = "10.9.0.1", "10.9.0.2"
PORT = 8000
KiB, MiB = 1 << 10, 1 << 20


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def two_stacks() -> tuple[Stack, Stack]:
    left, right = MemoryDevice.pair()
    return Stack(left, [f"{CLIENT}/24"]), Stack(right, [f"{NODE}/24"])


async def read_to_end(reader: asyncio.StreamReader) -> tuple[bytes, Exception | None]:
    """Everything until EOF, and how the stream ended: None for a FIN, the exception for a reset."""
    data = bytearray()
    try:
        while chunk := await reader.read(MiB):
            data += chunk
    except ConnectionError as exc:
        return bytes(data), exc
    return bytes(data), None


def send_reset(writer: asyncio.StreamWriter) -> None:
    """Close a kernel socket with a RST: SO_LINGER on with a zero timeout (socket(7))."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rig:
    """Client stack -> Proxy on the node stack (NODE:PORT) -> kernel backend on 127.0.0.1. The backend's accepted
    connections arrive on ``accepted`` for the test to drive; ``finished`` is set when the proxy handler returns."""

    def __init__(self, backend: tuple[str, int] | None = None, **options) -> None:
        self.backend_address, self.options = backend, options
        self.accepted: asyncio.Queue = asyncio.Queue()
        self.finished = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []  # a StreamWriter closes its connection when collected

    async def __aenter__(self) -> "Rig":
        self.client, self.node = await two_stacks()
        self.backend = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        address = self.backend_address or self.backend.sockets[0].getsockname()[:2]
        self.proxy = Proxy(address, **self.options)
        await self.node.start_server(self._serve, NODE, PORT)
        return self

    async def _accept(self, reader, writer) -> None:
        self._writers.append(writer)
        await self.accepted.put((reader, writer))

    async def _serve(self, reader, writer) -> None:
        try:
            await self.proxy(reader, writer)
        finally:
            self.finished.set()

    async def connect(self, **kwargs):
        reader, writer = await self.client.open_connection(NODE, PORT, **kwargs)
        self._writers.append(writer)
        return reader, writer

    async def __aexit__(self, *exc) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self.backend.close()
        await self.client.close()
        await self.node.close()


def test_echo_returns_a_megabyte_byte_exact_and_answers_our_fin_with_its_own():
    async def main():
        client, node = await two_stacks()
        async with client, node:
            await node.start_server(echo, NODE, 7)
            reader, writer = await client.open_connection(NODE, 7)
            payload = os.urandom(MiB)
            writer.write(payload)
            assert await reader.readexactly(len(payload)) == payload
            assert not reader.at_eof(), "echo must stay open while the client's side is open"
            writer.write_eof()
            assert await read_to_end(reader) == (b"", None)

    run(main())


def test_echo_ends_quietly_when_the_client_resets():
    async def main():
        client, node = await two_stacks()
        async with client, node:
            tasks = []
            await node.start_server(lambda r, w: tasks.append(asyncio.ensure_future(echo(r, w))), NODE, 7)
            reader, writer = await client.open_connection(NODE, 7)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.transport.abort()
            await tasks[0]  # it returns: the reset did not escape the handler

    run(main())


def test_discard_swallows_a_megabyte_then_closes_cleanly():
    """A clean FIN proves every byte was read: our stack resets a connection closed with unread data."""

    async def main():
        client, node = await two_stacks()
        async with client, node:
            await node.start_server(discard, NODE, 9)
            reader, writer = await client.open_connection(NODE, 9)
            writer.write(os.urandom(MiB))
            writer.write_eof()
            await writer.drain()
            assert await read_to_end(reader) == (b"", None)
            assert writer.transport.connection.tx.snd_una == writer.transport.connection.tx.snd_nxt

    run(main())


def test_proxy_relays_two_megabytes_each_way_byte_exact():
    async def main():
        async with Rig() as rig:
            up, down = os.urandom(2 * MiB), os.urandom(2 * MiB)
            reader, writer = await rig.connect()
            writer.write(up)
            writer.write_eof()
            backend_reader, backend_writer = await rig.accepted.get()
            backend_writer.write(down)
            backend_writer.write_eof()
            at_client, at_backend = await asyncio.gather(read_to_end(reader), read_to_end(backend_reader))
            assert at_client[1] is None and at_backend[1] is None  # both ended with a FIN
            assert hashlib.sha256(at_backend[0]).digest() == hashlib.sha256(up).digest()
            assert hashlib.sha256(at_client[0]).digest() == hashlib.sha256(down).digest()
            await rig.finished.wait()
            proxy = rig.proxy
            assert (proxy.connections, proxy.active, proxy.backend_failures) == (1, 0, 0)
            assert (proxy.bytes_up, proxy.bytes_down) == (len(up), len(down))

    run(main())


@pytest.mark.parametrize("closer", ["client", "backend"])
def test_a_half_close_passes_through_and_the_other_direction_still_flows(closer):
    async def main():
        async with Rig() as rig:
            client, backend = await rig.connect(), await rig.accepted.get()
            (first_reader, first), (second_reader, second) = (client, backend)[:: 1 if closer == "client" else -1]
            first.write(b"all I have to say")
            first.write_eof()
            assert await read_to_end(second_reader) == (b"all I have to say", None)
            second.write(b"an answer sent after that FIN")
            second.write_eof()
            assert await read_to_end(first_reader) == (b"an answer sent after that FIN", None)
            await rig.finished.wait()
            assert (rig.proxy.active, rig.proxy.backend_failures) == (0, 0)

    run(main())


def test_proxy_v2_header_names_the_client_as_the_node_saw_it():
    async def main():
        async with Rig(proxy_protocol=True) as rig:
            _, writer = await rig.connect()
            writer.write(b"hello")
            backend_reader, _ = await rig.accepted.get()
            fixed = await backend_reader.readexactly(16)
            header = fixed + await backend_reader.readexactly(header_length(fixed) - 16)
            client_port = writer.get_extra_info("sockname")[1]
            assert parse_v2(header) == ((CLIENT, client_port), (NODE, PORT))
            assert await backend_reader.readexactly(5) == b"hello"
            assert rig.proxy.bytes_up == 5  # the header is not the client's

    run(main())


def test_unreachable_backend_resets_the_client_and_warns(monkeypatch):
    # A fresh logger, bound inside capture_logs even if an earlier test configured structlog to cache loggers.
    monkeypatch.setattr(services, "log", structlog.get_logger())

    async def main():
        port = closed_port()
        async with Rig(backend=("127.0.0.1", port)) as rig:
            with capture_logs() as logs:
                reader, _ = await rig.connect()
                data, how = await read_to_end(reader)
                await rig.finished.wait()
            assert data == b"" and isinstance(how, ConnectionResetError), "a clean EOF would look like a response"
            assert (rig.proxy.backend_failures, rig.proxy.active) == (1, 0)
            (warning,) = [e for e in logs if e["event"] == "proxy.backend_failed"]
            assert (warning["log_level"], warning["backend"]) == ("warning", f"127.0.0.1:{port}")
            assert "ConnectionRefusedError" in warning["error"]

    run(main())


def test_backend_reset_mid_stream_resets_the_client_instead_of_truncating():
    async def main():
        async with Rig() as rig:
            reader, _ = await rig.connect()
            _, backend_writer = await rig.accepted.get()
            sent = pattern(0, 300 * KiB)
            backend_writer.write(sent)
            await backend_writer.drain()
            assert await reader.readexactly(100 * KiB) == sent[: 100 * KiB]
            send_reset(backend_writer)
            data, how = await read_to_end(reader)
            assert isinstance(how, ConnectionResetError), "the client must not see a clean end of a cut stream"
            assert sent[100 * KiB :].startswith(data)
            await rig.finished.wait()
            assert (rig.proxy.backend_failures, rig.proxy.active) == (1, 0)

    run(main())


def test_client_reset_mid_upload_resets_the_backend_instead_of_ending_the_upload():
    """A FIN would tell the backend the upload was complete; it must see the reset."""

    async def main():
        async with Rig() as rig:
            _, writer = await rig.connect()
            writer.write(b"x" * 1000)
            backend_reader, _ = await rig.accepted.get()
            assert await backend_reader.readexactly(1000) == b"x" * 1000
            writer.transport.abort()
            data, how = await read_to_end(backend_reader)
            assert data == b"" and isinstance(how, ConnectionResetError)
            await rig.finished.wait()
            assert (rig.proxy.active, rig.proxy.backend_failures) == (0, 0)

    run(main())


def test_client_reset_after_its_half_close_still_resets_an_idle_backend():
    """No pump reads the client after its FIN and the backend sends nothing: the proxy must notice the loss."""

    async def main():
        async with Rig() as rig:
            _, writer = await rig.connect()
            writer.write(b"request")
            writer.write_eof()
            backend_reader, backend_writer = await rig.accepted.get()
            assert await read_to_end(backend_reader) == (b"request", None)
            writer.transport.abort()
            await asyncio.wait_for(rig.finished.wait(), 5)
            # The backend's reading is over (it saw the FIN), so the reset shows when it answers.
            with pytest.raises(ConnectionError):
                while True:
                    backend_writer.write(b"a reply nobody will read")
                    await backend_writer.drain()
                    await asyncio.sleep(0.01)  # the RST is on its way over loopback
            assert (rig.proxy.active, rig.proxy.backend_failures) == (0, 0)

    run(main())


def test_a_client_that_does_not_read_stalls_the_backend_instead_of_filling_the_proxy():
    total = 20 * MiB

    async def main():
        async with Rig() as rig:
            reader, _ = await rig.connect(limit=16 * KiB)
            _, backend_writer = await rig.accepted.get()
            # A fixed send buffer (no autotuning) keeps what the kernels hold well under the 20 MB.
            backend_writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * KiB)
            sent = [0]

            async def produce():
                for offset in range(0, total, 64 * KiB):
                    backend_writer.write(pattern(offset, 64 * KiB))
                    await backend_writer.drain()
                    sent[0] = offset + 64 * KiB
                backend_writer.write_eof()

            producer = asyncio.ensure_future(produce())
            # Wait until nothing moves any more: the backend's drain() is blocked on a full pipeline.
            last, still = None, 0
            while still < 5:
                await asyncio.sleep(0.05)
                now = (sent[0], rig.proxy.bytes_down)
                still, last = (still + 1 if now == last else 0), now
            assert not producer.done(), "20 MB cannot fit in the buffers between a backend and a stalled client"
            # What the proxy handed on sits in the client's buffers (receive buffer, StreamReader) and the node's
            # (send buffer, transport's high-water mark): a few hundred KiB, not the backend's megabytes.
            assert rig.proxy.bytes_down < MiB
            received = 0
            while chunk := await reader.read(MiB):
                assert chunk == pattern(received, len(chunk))
                received += len(chunk)
            assert received == total
            await producer

    run(main())


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write a module into a directory on sys.path; forgotten from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def make(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        return name

    yield make
    for name in set(sys.modules) - before:
        if name.startswith("svc_"):
            del sys.modules[name]


def test_load_handler_finds_async_functions_and_async_callables(make_module):
    source = "from appliance.services import Proxy\nasync def handle(r, w): ...\nproxy = Proxy(('127.0.0.1', 9))\n"
    module = make_module("svc_good", source)
    handle = load_handler(f"{module}:handle")
    assert handle.__name__ == "handle"
    assert isinstance(load_handler(f"{module}:proxy"), Proxy)
    assert load_handler("appliance.services:echo") is echo


MISSING = "module 'svc_missing' not found; check the name and that it is importable (on PYTHONPATH)"
MALFORMED = "not of the form module:function; write it like 'mypkg.app:handle'"
SYNC = "'handle' is not a coroutine function; it must be `async def handle(reader, writer)`"
NO_ATTR = "has no attribute 'handle'; check the spelling, or define `async def handle(reader, writer)` there"


@pytest.mark.parametrize(
    ("spec", "source", "message"),
    [
        *[(spec, None, MALFORMED) for spec in ("svc.handle", "svc:", ":handle", "svc:handle:x", "../svc:handle")],
        ("svc_missing:handle", None, MISSING),
        ("appliance.svc_missing:handle", None, "module 'appliance.svc_missing' not found"),
        ("svc_dep:handle", "import svc_no_such_dep\n", "failed: No module named 'svc_no_such_dep'; install what"),
        ("svc_raises:handle", "raise RuntimeError('boom')\n", "raised RuntimeError: boom; fix the module"),
        ("svc_syntax:handle", "def handle(:\n", "raised SyntaxError"),
        ("svc_no_attr:handle", "async def serve(reader, writer): ...\n", f"module 'svc_no_attr' {NO_ATTR}"),
        ("svc_int:handle", "handle = 42\n", "'handle' is an object of type int, not a function; it must be `async"),
        ("svc_sync:handle", "def handle(reader, writer): ...\n", SYNC),
        ("svc_class:handle", "class handle:\n    async def __call__(self, r, w): ...\n", "not a coroutine"),
    ],
)
def test_load_handler_explains_each_problem_in_one_line(make_module, spec, source, message):
    if source is not None:
        make_module(spec.partition(":")[0], source)
    with pytest.raises(ValueError) as info:
        load_handler(spec)
    text = str(info.value)
    assert text.startswith(f"handler {spec!r}: ")
    assert message in text
    assert "\n" not in text
