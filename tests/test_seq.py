"""Sequence arithmetic modulo 2**32, with examples biased to the wrap."""

from hypothesis import example, given
from hypothesis import strategies as st

from stack.seq import SEQ_MOD, between, in_window, seq_add, seq_ge, seq_gt, seq_le, seq_lt, seq_max, seq_sub

# Numbers near the wrap and near the half-way point, where naive comparisons break, plus anything at all.
near_edges = st.one_of(
    st.integers(0, 2**16),
    st.integers(SEQ_MOD - 2**16, SEQ_MOD - 1),
    st.integers(2**31 - 2**16, 2**31 + 2**16),
    st.integers(0, SEQ_MOD - 1),
)
distance = st.integers(-(2**31) + 1, 2**31 - 1)


@given(near_edges, distance)
@example(SEQ_MOD - 1, 1)
@example(0, -1)
def test_sub_inverts_add(a, n):
    assert seq_sub(seq_add(a, n), a) == n


@given(near_edges, st.integers(1, 2**31 - 1))
@example(SEQ_MOD - 1, 1)
def test_forward_is_after_across_the_wrap(a, n):
    b = seq_add(a, n)
    assert seq_lt(a, b) and seq_le(a, b) and seq_gt(b, a) and seq_ge(b, a)
    assert not seq_lt(b, a) and not seq_gt(a, b)
    assert seq_max(a, b) == b


@given(near_edges)
def test_a_number_is_neither_before_nor_after_itself(a):
    assert not seq_lt(a, a) and not seq_gt(a, a) and seq_le(a, a) and seq_ge(a, a)


@given(near_edges, st.integers(0, 2**30), st.integers(0, 2**30))
@example(SEQ_MOD - 10, 20, 15)
def test_in_window_matches_offsets(start, size, offset):
    assert in_window(seq_add(start, offset), start, size) == (offset < size)


@given(near_edges, st.integers(0, 2**30), st.integers(0, 2**30))
def test_between_is_inclusive(low, span, offset):
    assert between(low, seq_add(low, offset), seq_add(low, span)) == (offset <= span)
