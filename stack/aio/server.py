"""A listening server with the behaviour of ``asyncio.Server``."""

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..host import Listener

if TYPE_CHECKING:
    from .stack import Stack


class Server(asyncio.AbstractServer):
    def __init__(self, stack: "Stack", listener: Listener, protocol_factory: Callable[[], asyncio.BaseProtocol]):
        self._stack = stack
        self.listener = listener
        self.protocol_factory = protocol_factory
        self._serving = False
        self._closed = asyncio.Event()
        self._serving_forever: asyncio.Future | None = None

    @property
    def sockets(self) -> tuple:
        return ()  # no kernel sockets: the stack answers from user space

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed.is_set():
            raise RuntimeError("this server is closed: create a new one with start_server() or create_server()")
        if not self._serving:
            self._serving = True
            self._stack._serve(self)

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError("serve_forever() is already running on this server")
        await self.start_serving()
        self._serving_forever = asyncio.get_running_loop().create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise
        finally:
            self._serving_forever = None

    def close(self) -> None:
        """Stop accepting; connections already accepted go on (as with asyncio.Server)."""
        if self._closed.is_set():
            return
        self._serving = False
        self._stack._unserve(self)
        self._closed.set()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._stack.loop

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()
        await self.wait_closed()
