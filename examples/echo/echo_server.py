"""A line echo server for asyncio streams, and the same server with a planted bug.

Runs unchanged on asyncio's own sockets (``python echo_server.py``) or on the simulated network of
``stack.testing`` (see test_echo.py), which is the point: the code under test is the code you deploy.
"""

import asyncio


async def handle_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo every line back until the client closes its side, then close ours."""
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


async def handle_echo_with_bug(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The planted bug: it takes each read to end on a line boundary, so when TCP delivers a line in two pieces
    (a segment lost and resent, a slow link) the first piece is dropped. It passes every test on loopback."""
    while chunk := await reader.read(65536):
        *lines, _partial = chunk.split(b"\n")
        for line in lines:
            writer.write(line + b"\n")
        await writer.drain()
    writer.close()


async def main(port: int = 8007) -> None:
    server = await asyncio.start_server(handle_echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
