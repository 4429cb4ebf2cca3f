"""Small asyncio services our stack runs for the kernel-peer tests and the TUN benchmark."""

import asyncio
import hashlib


async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Hash everything to EOF, answer with the hex digest, close."""
    digest = hashlib.sha256()
    while chunk := await reader.read(1 << 20):
        digest.update(chunk)
    writer.write(digest.hexdigest().encode())
    await writer.drain()
    writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo to EOF, then close."""
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.close()


class HttpOk(asyncio.Protocol):
    """The smallest HTTP/1.1 responder: one request, one short reply, then close (``Connection: close``). The
    same code serves on kernel sockets and on our stack, so a connections-per-second comparison measures TCP."""

    REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.request = b""

    def data_received(self, data: bytes) -> None:
        self.request += data
        if b"\r\n\r\n" in self.request:
            self.transport.write(self.REPLY)
            self.transport.close()
