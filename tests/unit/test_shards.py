"""Shards are ranges of the person's 32-bit hash: together they hold every bucket once."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.store.shards import HASH_SPACE, bounds, predicate, shard_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 16, 1000])
def test_shards_partition_the_hash_space(shards: int) -> None:
    ranges = [bounds(k, shards) for k in range(shards)]
    assert ranges[0][0] == 0 and ranges[-1][1] == HASH_SPACE
    assert all(hi == lo for (_, hi), (lo, _) in pairwise(ranges))  # adjacent: no gap, no overlap
    sizes = [hi - lo for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1  # as even as integers allow


@given(st.integers(0, HASH_SPACE - 1), st.integers(1, 4096))
def test_shard_of_agrees_with_the_bounds(bucket: int, shards: int) -> None:
    k = shard_of(bucket, shards)
    lo, hi = bounds(k, shards)
    assert 0 <= k < shards and lo <= bucket < hi


def test_predicate() -> None:
    assert predicate("bucket", 0, 1) == "true"
    assert predicate("h.bucket", 1, 2) == "h.bucket >= 2147483648 and h.bucket < 4294967296"
    with pytest.raises(ValueError, match="shard 2 is not one of 0..1"):
        bounds(2, 2)
