"""The download pattern of the anycast lab and its demo: byte ``i`` of every download is ``PATTERN[i % PERIOD]``.

Servers (the demo's download service, the lab tests' kernel stand-in) send it and clients check it, so a byte
that arrives from the wrong connection, at the wrong offset or twice shows up as a mismatch. The period is prime,
so it shares no factor with any segment size, buffer size or sequence-range size that could make a misplaced block
look right by accident.

Both directions work on ``_DOUBLE`` (the pattern twice over): any slice of up to ``PERIOD`` bytes starting anywhere
in the period is one contiguous run there, so sending is a zero-copy memoryview and checking is a single memcmp
(``bytes.startswith`` takes any buffer), never a Python loop over bytes.
"""

import hashlib

PERIOD = 1_048_573  # prime, just under 1 MiB
PATTERN = hashlib.shake_256(b"anycast-tcp lab").digest(PERIOD)
_DOUBLE = PATTERN + PATTERN
_VIEW = memoryview(_DOUBLE)


def view(offset: int, size: int) -> memoryview:
    """The pattern bytes ``[offset, offset + size)`` without copying; ``size`` is at most ``PERIOD``."""
    if not 0 <= size <= PERIOD:
        raise ValueError(f"size {size} must be 0 to PERIOD ({PERIOD}); use chunk() for more")
    start = offset % PERIOD
    return _VIEW[start : start + size]


def chunk(offset: int, size: int) -> bytes:
    """The pattern bytes ``[offset, offset + size)``, any size (for servers)."""
    if size <= PERIOD:
        return bytes(view(offset, size))
    return b"".join(view(offset + done, min(PERIOD, size - done)) for done in range(0, size, PERIOD))


def verify(offset: int, data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is exactly the pattern bytes starting at ``offset`` (memcmp speed, no copy of ``data``)."""
    data = memoryview(data).cast("B")
    for done in range(0, len(data), PERIOD):
        piece = data[done : done + PERIOD]
        if not _DOUBLE.startswith(piece, (offset + done) % PERIOD):
            return False
    return True


def first_mismatch(offset: int, data: bytes | bytearray | memoryview) -> int | None:
    """The offset (in the download) of the first byte of ``data`` that differs from the pattern, or None; a
    bisection over ``verify``, for error reports only."""
    data = memoryview(data).cast("B")
    if verify(offset, data):
        return None
    lo, hi = 0, len(data)  # data[:lo] matches; data[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if verify(offset, data[:mid]):
            lo = mid
        else:
            hi = mid
    return offset + lo
