"""A download service for an anycast cluster: the client sends a size in bytes, the server streams that many
bytes of a known pattern and closes. Deployed with ``anycast-tcp run`` as a python service (``module:function``)
or property-tested in simulation (test_download_service.py)."""

import asyncio

PATTERN = bytes(range(251))  # a prime length, so an offset error shows in the bytes


def expected(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


async def serve_download(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    size = int(await reader.readline())
    body = expected(size)
    for start in range(0, size, 65536):
        writer.write(body[start : start + 65536])
        await writer.drain()
    writer.close()
