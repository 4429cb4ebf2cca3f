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
