"""The sender's buffer of unacknowledged bytes: appended at the back, read anywhere, released from the front.

A single bytearray does this badly: once bytes are released from its front, growing it again copies everything it
holds (CPython reallocates and moves the whole buffer), measured at 27 µs per 64 KB written and acknowledged
with a 256 KB buffer, against 3 µs for the copy itself. Here the bytes sit in chunks of at most ``CHUNK``; only
the last chunk grows, released chunks are dropped whole, and a read copies only what it returns.
"""

from collections import deque

CHUNK = 64 * 1024


class SendBuffer:
    __slots__ = ("_chunks", "_head", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytearray] | None = None  # made when needed: an empty deque costs 600 bytes
        self._head = 0  # bytes of the first chunk already released
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data) -> None:
        view = memoryview(data)
        if not view:
            return
        if self._chunks is None:
            self._chunks = deque()
        chunks = self._chunks
        while view:
            if not chunks or len(chunks[-1]) >= CHUNK:
                chunks.append(bytearray())
            last = chunks[-1]
            room = CHUNK - len(last)
            last += view[:room]
            self._size += min(room, len(view))
            view = view[room:]

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` (counted from the first unreleased byte)."""
        if start >= stop or self._chunks is None:
            return b""
        pieces = []
        position = -self._head  # where the current chunk starts
        for chunk in self._chunks:
            end = position + len(chunk)
            if end > start:
                lo, hi = max(start - position, 0), min(stop - position, len(chunk))
                pieces.append(memoryview(chunk)[lo:hi])
                if stop <= end:
                    break
            position = end
        if len(pieces) == 1:
            return bytes(pieces[0])
        return b"".join(pieces)

    def release(self, count: int) -> None:
        """Drop the first ``count`` bytes."""
        count = min(count, self._size)
        if not count:
            return
        self._size -= count
        chunks, head = self._chunks, self._head + count
        while chunks and head >= len(chunks[0]):
            head -= len(chunks.popleft())
        self._head = head
        if not self._size:
            self._chunks, self._head = None, 0  # an idle connection holds no deque
