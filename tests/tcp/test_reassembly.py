"""Out-of-order reassembly under random permutations, overlaps and duplicates (FreeBSD's tests, in spirit)."""

import random

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.reassembly import Reassembler


def test_gap_filled_releases_everything_in_order():
    r = Reassembler()
    r.insert(10, b"klm")
    r.insert(5, b"fghij")
    assert r.pop_ready(0) == b""
    r.insert(0, b"abcde")
    assert r.pop_ready(0) == b"abcdefghijklm"
    assert r.bytes_held == 0


def test_block_wholly_behind_offset_is_skipped_not_stopping_the_scan():
    r = Reassembler()
    r.insert(100, b"x" * 100)
    r.insert(300, b"y" * 10)
    # an in-order segment covered [0, 300): the first block is stale, the second is ready
    assert r.pop_ready(300) == b"y" * 10


@given(
    st.binary(min_size=1, max_size=400),
    st.lists(st.tuples(st.integers(0, 399), st.integers(1, 80)), max_size=40),
    st.randoms(use_true_random=False),
)
def test_any_permutation_of_overlapping_pieces_reassembles_exactly(stream, pieces, rnd):
    """Pieces (with overlaps and duplicates) inserted in any order, plus a cover of the whole stream, always
    come out as exactly the stream, whatever order and overlap."""
    chunks = [(s, stream[s : s + n]) for s, n in pieces if s < len(stream)]
    cover = [(i, stream[i : i + 37]) for i in range(0, len(stream), 37)]
    everything = chunks + cover
    rnd.shuffle(everything)
    r = Reassembler()
    out = bytearray()
    for start, data in everything:
        if start + len(data) <= len(out):
            continue
        if start <= len(out):
            data, start = data[len(out) - start :], len(out)
        if start == len(out):
            out += data
            while more := r.pop_ready(len(out)):
                out += more
        else:
            r.insert(start, data)
        assert r.bytes_held == sum(e - s for s, e in r.blocks())
        blocks = r.blocks()
        assert all(blocks[i][1] < blocks[i + 1][0] for i in range(len(blocks) - 1)), "blocks overlap or touch"
    assert bytes(out) == stream


def test_random_segments_of_a_large_stream():
    rnd = random.Random(7)
    stream = rnd.randbytes(50_000)
    segs = [(i, stream[i : i + 1000]) for i in range(0, len(stream), 1000)]
    rnd.shuffle(segs)
    r = Reassembler()
    out = bytearray()
    for start, data in segs:
        if start == len(out):
            out += data
            while more := r.pop_ready(len(out)):
                out += more
        else:
            r.insert(start, data)
    assert bytes(out) == stream


def test_blocks_beyond_the_limit_are_refused_but_bytes_that_merge_still_are_held():
    r = Reassembler(max_blocks=3)
    assert [r.insert(start, b"x") for start in (10, 20, 30)] == [1, 1, 1]
    assert r.insert(40, b"x") == -1 and r.refused == 1 and len(r) == 3  # a fourth block
    assert r.insert(11, b"yy") == 2 and len(r) == 3  # extends the first: held
    assert r.insert(21, b"z" * 9) == 9 and len(r) == 2  # joins two: held, and room is made
    assert r.insert(40, b"x") == 1 and len(r) == 3
