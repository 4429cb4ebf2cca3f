"""Bytes-like input made into plain bytes before parsing."""


def as_bytes(data) -> bytes:
    """``bytes(data)`` for any buffer: bytearray, memoryview of any format or shape, array.

    ``bytes(n)`` on an int would quietly make n zero bytes, and a memoryview's ``len()`` counts items rather
    than bytes when its format is not "B"; going through ``memoryview(...).tobytes()`` avoids both, and raises
    TypeError for something that is not a buffer at all (our misuse, not the peer's).
    """
    return memoryview(data).tobytes()
