"""Home ranges and the ISN policy (issue 5): every ISN maps back to its node, flat over the allowed part of the
slice, and climbing with the clock for one 4-tuple."""

import collections

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from appliance.ranges import HomeRangeIsn, MiB, RangePlan
from stack.seq import SEQ_MOD, seq_add
from stack.tcp.isn import CLOCK_TICKS_PER_SECOND

SECRET = b"cluster-secret-16-bytes!"
plans = (
    st.integers(0, 5)
    .flatmap(
        lambda k: st.builds(RangePlan, st.just(2**k), st.integers(1, 2**k), st.sampled_from([0, 1 * MiB, 64 * MiB]))
    )
    .filter(lambda plan: plan.headroom < plan.slice_size)
)
addresses = st.binary(min_size=4, max_size=4)
ports = st.integers(1, 65535)


@given(st.sampled_from([1, 2, 4, 8, 16, 32]), st.integers(0, SEQ_MOD - 1))
@example(1, 2**31)
def test_the_slices_tile_the_sequence_space_across_the_wrap(ranges, seq):
    owner = RangePlan(ranges, 1, 0).owner_of(seq)
    plan = RangePlan(ranges, owner, 0)
    assert 1 <= owner <= ranges
    assert (seq - plan.slice_start) % SEQ_MOD < plan.slice_size  # seq lies in its owner's slice
    assert RangePlan(ranges, 1, 0).owner_of(seq + SEQ_MOD) == owner  # whatever the caller's representation


@given(plans, addresses, ports, addresses, ports, st.floats(0, 10**6))
def test_every_isn_maps_back_to_its_node_with_headroom_before_the_slice_end(plan, la, lp, ra, rp, now):
    isn = HomeRangeIsn(plan, SECRET)(la, lp, ra, rp, now)
    assert plan.owner_of(isn) == plan.node_id
    # the connection can send `headroom` bytes and still be in our slice
    assert plan.owner_of(seq_add(isn, plan.headroom)) == plan.node_id


def test_isns_are_spread_flat_over_the_allowed_part_of_the_slice():
    plan = RangePlan(8, 3, 256 * MiB)
    isn = HomeRangeIsn(plan, SECRET)
    buckets = collections.Counter()
    samples = 40_000
    for port in range(samples):
        value = isn(b"\xc0\x00\x02\x0a", 80, b"\xc6\x33\x64\x07", 1024 + port % 60000, port * 0.001)
        buckets[(value - plan.slice_start) * 20 // plan.isn_span] += 1
    assert set(buckets) == set(range(20))  # the whole allowed span is used, nothing beyond it
    expected = samples / 20
    chi2 = sum((count - expected) ** 2 / expected for count in buckets.values())
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 beyond about 43.8


def test_consecutive_isns_for_one_4_tuple_advance_with_the_clock():
    plan = RangePlan(4, 2)
    isn = HomeRangeIsn(plan, SECRET)
    tuple_ = (b"\xc0\x00\x02\x0a", 80, b"\xc6\x33\x64\x07", 40000)
    first, later = isn(*tuple_, 10.0), isn(*tuple_, 10.5)
    assert (later - first) % plan.isn_span == CLOCK_TICKS_PER_SECOND // 2


def test_the_secret_keeps_isns_apart_between_clusters():
    plan = RangePlan(4, 2)
    tuple_ = (b"\xc0\x00\x02\x0a", 80, b"\xc6\x33\x64\x07", 40000)
    assert HomeRangeIsn(plan, SECRET)(*tuple_, 1.0) != HomeRangeIsn(plan, b"another-secret-16b")(*tuple_, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ranges": 6, "node_id": 1}, "must be a power of two"),
        ({"ranges": 4, "node_id": 5}, "outside 1..4"),
        ({"ranges": 64, "node_id": 1, "headroom": 64 * MiB}, "lower headroom below 64 MiB"),
    ],
)
def test_bad_plans_get_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RangePlan(**kwargs)
