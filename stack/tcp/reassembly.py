"""Out-of-order segments held until the hole before them fills (RFC 9293 §3.10.7.4 seventh, SHLD-31).

Positions are absolute stream offsets (unbounded Python ints), so nothing here wraps; the receiver converts
sequence numbers once, at the window check. Held bytes are bounded by the caller, who only inserts what lies
inside the advertised receive window.
"""

import bisect


class Reassembler:
    __slots__ = ("_data", "_starts", "bytes_held", "max_blocks", "refused")

    def __init__(self, max_blocks: int = 1024) -> None:
        # Disjoint, non-adjacent blocks sorted by start: _starts[i] is where _data[i] begins.
        self._starts: list[int] = []
        self._data: list[bytes] = []
        self.bytes_held = 0
        self.max_blocks = max_blocks
        self.refused = 0  # segments not held because they would have been one block too many

    def __len__(self) -> int:
        return len(self._starts)

    def insert(self, start: int, data: bytes) -> int:
        """Hold ``data`` at stream offset ``start``, merging with overlapping or adjacent blocks, and return how
        many of its bytes were new. Where bytes overlap, the ones already held win (both copies must be equal in a
        correct peer). A segment that would make one block more than ``max_blocks`` is not held: -1."""
        if not data:
            return 0
        before = self.bytes_held
        end = start + len(data)
        starts = self._starts
        # First block that could touch [start, end]: the one before the insertion point may reach into it.
        i = bisect.bisect_left(starts, start)
        if i > 0 and starts[i - 1] + len(self._data[i - 1]) >= start:
            i -= 1
        if len(starts) >= self.max_blocks and not (i < len(starts) and starts[i] <= end):
            self.refused += 1  # it touches no block held: it would be one block more
            return -1
        j = i
        merged_start, merged = start, data
        while j < len(starts) and starts[j] <= end:
            block_start, block = starts[j], self._data[j]
            block_end = block_start + len(block)
            lo = min(merged_start, block_start)
            pieces = []
            if merged_start < block_start:
                pieces.append(merged[: block_start - merged_start])
            pieces.append(block)
            merged_end = merged_start + len(merged)
            if merged_end > block_end:
                pieces.append(merged[block_end - merged_start :])
            self.bytes_held -= len(block)
            merged_start, merged = lo, b"".join(pieces)
            j += 1
        starts[i:j] = [merged_start]
        self._data[i:j] = [merged]
        self.bytes_held += len(merged)
        return self.bytes_held - before

    def pop_ready(self, offset: int) -> bytes:
        """Remove and return the bytes held from ``offset`` on, if the first block reaches it. The part of that
        block before ``offset`` (already delivered) is discarded, as are blocks wholly behind ``offset``
        (covered by a larger in-order segment)."""
        starts, data = self._starts, self._data
        while starts and starts[0] <= offset:
            start, block = starts.pop(0), data.pop(0)
            self.bytes_held -= len(block)
            if start + len(block) > offset:
                return block[offset - start :]
        return b""

    def block_containing(self, offset: int) -> tuple[int, int] | None:
        """The held range ``(start, end)`` that contains ``offset``, if any."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset < self._starts[i] + len(self._data[i]):
            return self._starts[i], self._starts[i] + len(self._data[i])
        return None

    def blocks(self) -> list[tuple[int, int]]:
        """The held ranges as ``(start, end)`` stream offsets, lowest first."""
        return [(s, s + len(d)) for s, d in zip(self._starts, self._data)]

    def clear(self) -> None:
        self._starts.clear()
        self._data.clear()
        self.bytes_held = 0
