"""The asyncio runtime: the stack as a library for asyncio servers and clients."""

from .server import Server
from .stack import Stack
from .transport import TcpTransport

__all__ = ["Server", "Stack", "TcpTransport"]
