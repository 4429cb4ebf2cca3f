"""The appliance's built-in services: connection handlers for ``stack.start_server(handler, host, port)``.

``echo`` (RFC 862) and ``discard`` (RFC 863) for testing a node; ``Proxy`` terminates the client's TCP here and
relays to a unicast backend over the kernel's TCP; ``load_handler`` finds an operator's own ``async def``.

Every handler keeps memory bounded the asyncio way: read a bounded chunk, write it, await ``drain()``. A peer that
stops reading stalls the writer, which stops reading its own side, whose window then closes, so a slow client slows
the backend down instead of growing a buffer in the proxy.
"""

import asyncio
import importlib
import inspect
import socket
import struct
from collections.abc import Awaitable, Callable

import structlog

from .proxy_protocol import build_v2

log = structlog.get_logger()

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CHUNK = 64 * 1024  # bytes taken per read: what one direction of one connection holds in the handler at most
CLIENT, BACKEND = "client", "backend"
# socket(7) SO_LINGER on with a zero timeout: close() sends a RST. asyncio's abort() alone closes a kernel socket
# with a FIN when nothing is left unread, which the backend would take for the end of a complete request.
LINGER_RESET = struct.pack("ii", 1, 0)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 862: an echo service "simply sends back to the originating source any data it receives"; the client's
    FIN gets ours once everything is echoed. A reset ends it quietly."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        writer.close()
        await writer.wait_closed()
    except OSError:  # ConnectionResetError and the stack's TimeoutError included: the client is gone
        writer.transport.abort()


async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 863: "simply throws away any data it receives", reading on so the client's window stays open."""
    try:
        while await reader.read(CHUNK):
            pass
        writer.close()
        await writer.wait_closed()
    except OSError:
        writer.transport.abort()


class _SideFailed(Exception):
    """One side's connection failed (reset, timed out, or lost) while the relay was using it."""

    def __init__(self, side: str, error: BaseException | None) -> None:
        super().__init__(side, error)
        self.side, self.error = side, error


class Proxy:
    """Relay each client connection to ``backend`` over kernel TCP: bytes, half-closes and resets pass through.

    A failure never looks like a finished response: when the backend cannot be reached or resets, the client gets
    a reset, never a FIN (which would make a truncated download look complete); when the client resets, so does the
    backend connection. Only when both directions ended with a FIN are both connections closed normally.

    The counters are plain ints for the metrics endpoint; ``bytes_up`` is client to backend (the PROXY header not
    included), ``bytes_down`` backend to client, both counted as the relay hands them on.
    """

    def __init__(self, backend: tuple[str, int], *, proxy_protocol: bool = False, connect_timeout: float = 5.0):
        host, port = backend
        self.backend = (host, port)
        self.proxy_protocol = proxy_protocol
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout={connect_timeout!r} must be a positive number of seconds")
        self.connect_timeout = connect_timeout
        self.connections = 0
        self.active = 0
        self.backend_failures = 0
        self.bytes_up = 0
        self.bytes_down = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        client = writer.get_extra_info("peername")
        log.debug("proxy.open", client=_text(client), backend=_text(self.backend))
        outcome, moved = "failed", {CLIENT: 0, BACKEND: 0}
        try:
            outcome = await self._serve(reader, writer, client, moved)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.active -= 1
            log.debug(
                "proxy.close",
                client=_text(client),
                backend=_text(self.backend),
                outcome=outcome,
                bytes_up=moved[BACKEND],
                bytes_down=moved[CLIENT],
            )

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client, moved: dict[str, int]
    ) -> str:
        try:
            backend_reader, backend_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.backend), self.connect_timeout
            )
        except TimeoutError:
            self._backend_failed(client, f"no connection within {self.connect_timeout} s")
            _abort(writer)
            return "backend unreachable"
        except OSError as exc:
            self._backend_failed(client, _describe(exc))
            _abort(writer)
            return "backend unreachable"
        ends = (writer, backend_writer)
        try:
            if self.proxy_protocol:
                # proxy-protocol.txt §2.2: "The sender must ensure that all the protocol header is sent at once":
                # one write, ahead of any of the client's bytes.
                local = writer.get_extra_info("sockname")
                backend_writer.write(build_v2(client[:2], local[:2]))
            failure = await self._relay(reader, writer, backend_reader, backend_writer, moved)
        except BaseException:  # cancelled (the node stopping) or a bug: leave no connection half-alive
            _abort(*ends)
            raise
        if failure is None:
            return "closed"
        if isinstance(failure, _SideFailed) and failure.side == BACKEND:
            self._backend_failed(client, _describe(failure.error))
            return "backend reset"
        if isinstance(failure, _SideFailed):
            return "client reset"
        raise failure

    async def _relay(self, reader, writer, backend_reader, backend_writer, moved) -> BaseException | None:
        """Run both directions until each has passed its FIN on (None), or until a side fails (its error); both
        connections are closed or reset on return."""
        up = asyncio.ensure_future(self._pump(reader, backend_writer, CLIENT, BACKEND, moved))
        down = asyncio.ensure_future(self._pump(backend_reader, writer, BACKEND, CLIENT, moved))
        # Connection loss is watched too: a client that half-closed and then reset has no reader waiting on it,
        # and an idle backend would otherwise hold the relay open until it next sent something.
        client_lost = asyncio.ensure_future(writer.wait_closed())
        backend_lost = asyncio.ensure_future(backend_writer.wait_closed())
        try:
            failure = await _first_failure(up, down, client_lost, backend_lost)
            if failure is None:
                writer.close()
                backend_writer.close()
            else:
                _abort(writer, backend_writer)
        except BaseException:
            _abort(writer, backend_writer)
            raise
        finally:
            for pump in (up, down):
                pump.cancel()
            # Closing or aborting ends both connections, so the watchers finish; their errors are already known.
            await asyncio.gather(up, down, client_lost, backend_lost, return_exceptions=True)
        return failure

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        source_side: str,
        sink_side: str,
        moved: dict[str, int],
    ) -> None:
        while True:
            try:
                data = await source.read(CHUNK)
            except OSError as exc:
                raise _SideFailed(source_side, exc) from None
            if not data:
                break
            try:
                sink.write(data)
                await sink.drain()
            except OSError as exc:
                raise _SideFailed(sink_side, exc) from None
            moved[sink_side] += len(data)
            if sink_side == BACKEND:
                self.bytes_up += len(data)
            else:
                self.bytes_down += len(data)
        # RFC 9293 §3.6: CLOSE means "I have no more to send", for one direction only: pass the FIN on and let
        # the other direction flow until it ends too.
        try:
            sink.write_eof()
        except OSError as exc:
            raise _SideFailed(sink_side, exc) from None

    def _backend_failed(self, client, error: str) -> None:
        self.backend_failures += 1
        log.warning("proxy.backend_failed", backend=_text(self.backend), client=_text(client), error=error)


async def _first_failure(up, down, client_lost, backend_lost) -> BaseException | None:
    """Wait for both pumps; the first failure ends the wait. A side whose connection is lost while we still owe it
    bytes has failed, even if no pump was touching it at the time."""
    waiting = {up, down, client_lost, backend_lost}
    while not (up.done() and down.done()):
        done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for pump in (up, down):
            if pump in done and pump.exception() is not None:
                return pump.exception()
        if client_lost in done and not down.done():
            return _SideFailed(CLIENT, _lost_error(client_lost))
        if backend_lost in done and not up.done():
            return _SideFailed(BACKEND, _lost_error(backend_lost))
    return None


def _lost_error(watcher: asyncio.Future) -> BaseException:
    return watcher.exception() or ConnectionAbortedError("the connection closed before the relay finished")


def _abort(*writers: asyncio.StreamWriter) -> None:
    """Reset each connection (RFC 9293 §3.10.5 ABORT); harmless on a connection that is already gone."""
    for writer in writers:
        sock = writer.get_extra_info("socket")  # None on our stack, whose abort() always sends the RST
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            except OSError:
                pass  # already closed: nothing left to reset
        writer.transport.abort()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "connection lost"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(endpoint) -> str | None:
    if not endpoint:
        return None
    host, port = endpoint[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_handler(spec: str) -> Handler:
    """The ``async def handler(reader, writer)`` named by ``spec`` ("package.module:function"). Any problem is a
    ValueError whose message is one line: the spec, what is wrong, and how to fix it."""
    where = f"handler {spec!r}"
    module_name, colon, name = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not colon or not all(part.isidentifier() for part in module_name.split(".")) or not name.isidentifier():
        raise ValueError(f"{where}: not of the form module:function; write it like 'mypkg.app:handle'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(
                f"{where}: module {module_name!r} not found; check the name and that it is importable (on PYTHONPATH)"
            ) from None
        raise ValueError(
            f"{where}: importing {module_name!r} failed: {exc}; install what it needs or fix its imports"
        ) from None
    except Exception as exc:
        raise ValueError(
            f"{where}: importing {module_name!r} raised {_describe(exc)}; fix the module so that it imports cleanly"
        ) from None
    try:
        handler = getattr(module, name)
    except AttributeError:
        raise ValueError(
            f"{where}: module {module_name!r} has no attribute {name!r}; check the spelling, or define "
            f"`async def {name}(reader, writer)` there"
        ) from None
    if not callable(handler):
        raise ValueError(
            f"{where}: {name!r} is an object of type {type(handler).__name__}, not a function; it must be "
            f"`async def {name}(reader, writer)`"
        )
    # An instance with ``async def __call__`` (like Proxy) serves as well as a function.
    is_async = inspect.iscoroutinefunction(handler) or (
        not inspect.isclass(handler) and inspect.iscoroutinefunction(type(handler).__call__)
    )
    if not is_async:
        raise ValueError(
            f"{where}: {name!r} is not a coroutine function; it must be `async def {name}(reader, writer)`"
        )
    return handler
