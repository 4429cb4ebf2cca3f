"""The sender's chunked buffer against a plain bytearray doing the same appends, reads and releases."""

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.sendbuffer import CHUNK, SendBuffer

sizes = st.sampled_from([0, 1, 7, 1460, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
operations = st.lists(st.tuples(st.sampled_from(["append", "release", "read"]), sizes, sizes), max_size=40)


@given(operations)
def test_matches_a_bytearray(ops):
    buffer, reference, counter = SendBuffer(), bytearray(), 0
    for op, a, b in ops:
        if op == "append":
            data = bytes((counter + i) & 0xFF for i in range(a))
            counter += a
            buffer.append(memoryview(data) if a % 2 else data)
            reference += data
        elif op == "release":
            buffer.release(a)
            del reference[:a]
        else:
            start, stop = sorted((a % (len(reference) + 1), b % (len(reference) + 1)))
            assert buffer.read(start, stop) == bytes(reference[start:stop])
        assert len(buffer) == len(reference)
    assert buffer.read(0, len(reference)) == bytes(reference)
