"""The lab demo's download service, run by a node as a ``python`` service (``appliance.demo_service:download``).

A request is one line, either the lab's own ``GET <n>\\n`` or an HTTP/1.x request line for ``/<n>`` (so that
``curl http://192.0.2.10/1000000`` works from the lab's client namespace); the answer is ``n`` bytes of the
pattern, then a FIN. Anything else is closed without an answer.

The bytes are ``appliance.pattern``'s, which ``appliance.demo_client`` and the lab tests' clients check.
"""

import asyncio
import re

from .pattern import view

CHUNK = 256 * 1024  # bytes handed to the transport per write; drain() in between bounds what we buffer
MAX_BYTES = 1 << 40  # a request for more is refused: a typo should not mean a download that never ends
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request line
MAX_LINE = 1024
MAX_HEADERS = 100  # HTTP: header lines read (and ignored) after the request line

_LAB = re.compile(rb"GET (\d{1,15})\r?\n")
_HTTP = re.compile(rb"GET /(\d{1,15}) HTTP/1\.[01]\r?\n")


async def download(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one request with ``n`` pattern bytes, ``drain()`` after every chunk so that a slow client slows us
    down instead of growing a buffer. A bad request, or a client that goes away, ends the connection."""
    try:
        try:
            size = await asyncio.wait_for(_request(reader, writer), REQUEST_TIMEOUT)
        except (TimeoutError, ValueError, asyncio.LimitOverrunError):
            size = None  # no request in time, or a line too long: not one we serve
        if size is None:
            writer.close()
            await writer.wait_closed()
            return
        offset = 0
        while offset < size:
            n = min(CHUNK, size - offset)
            writer.write(view(offset, n))
            offset += n
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    except OSError:  # ConnectionResetError and the stack's TimeoutError included: the client is gone
        writer.transport.abort()


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int | None:
    """The size asked for, or None for a request we do not serve. An HTTP request gets its status line and
    headers here, once its own headers have been read."""
    line = await reader.readline()
    if len(line) > MAX_LINE:
        return None
    if match := _LAB.fullmatch(line):
        size = int(match[1])
        return size if size <= MAX_BYTES else None
    if not (match := _HTTP.fullmatch(line)):
        return None
    for _ in range(MAX_HEADERS):
        header = await reader.readline()
        if header in (b"\r\n", b"\n"):
            break
        if not header.endswith(b"\n"):
            return None  # the client closed in the middle of its headers
    else:
        return None
    size = int(match[1])
    if size > MAX_BYTES:
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        return 0
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size
    )
    return size
