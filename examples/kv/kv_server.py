"""A small key-value protocol over asyncio streams: a server, a client, and a server with a planted bug.

Requests and replies are lines, values length-prefixed:
    SET <key> <length>\\n<value bytes>   ->  OK\\n
    GET <key>\\n                         ->  VALUE <length>\\n<value bytes>   or   NONE\\n
    DEL <key>\\n                         ->  OK\\n
"""

import asyncio


class KeyValueServer:
    def __init__(self, *, planted_bug: bool = False) -> None:
        self.data: dict[bytes, bytes] = {}
        self.planted_bug = planted_bug

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                command, key, *rest = line.split()
                if command == b"SET":
                    length = int(rest[0])
                    # The planted bug: read(n) returns *at most* n bytes, whatever has arrived so far; a value
                    # TCP delivers in pieces is stored cut short and the rest is parsed as the next request.
                    value = await (reader.read(length) if self.planted_bug else reader.readexactly(length))
                    self.data[key] = value
                    writer.write(b"OK\n")
                elif command == b"GET":
                    value = self.data.get(key)
                    writer.write(b"NONE\n" if value is None else b"VALUE %d\n%b" % (len(value), value))
                elif command == b"DEL":
                    self.data.pop(key, None)
                    writer.write(b"OK\n")
                await writer.drain()
        except (ValueError, IndexError, asyncio.IncompleteReadError):
            pass  # a malformed request or a client gone mid-value: drop the connection
        writer.close()


class KeyValueClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, open_connection, host: str, port: int) -> "KeyValueClient":
        """``open_connection`` is ``asyncio.open_connection`` or a simulated host's."""
        return cls(*await open_connection(host, port))

    async def set(self, key: bytes, value: bytes) -> None:
        self.writer.write(b"SET %b %d\n%b" % (key, len(value), value))
        await self._expect_ok()

    async def delete(self, key: bytes) -> None:
        self.writer.write(b"DEL %b\n" % key)
        await self._expect_ok()

    async def get(self, key: bytes) -> bytes | None:
        self.writer.write(b"GET %b\n" % key)
        reply = await self.reader.readline()
        if reply == b"NONE\n":
            return None
        if not reply.startswith(b"VALUE "):
            raise ConnectionError(f"unexpected reply {reply[:40]!r}")
        return await self.reader.readexactly(int(reply.split()[1]))

    async def _expect_ok(self) -> None:
        reply = await self.reader.readline()
        if reply != b"OK\n":
            raise ConnectionError(f"unexpected reply {reply[:40]!r}")


async def main(port: int = 8008) -> None:
    server = await asyncio.start_server(KeyValueServer().handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
