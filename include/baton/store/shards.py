"""Shards: the people split by a stable hash, as ranges of it.

A person's ``bucket`` is the first 32 bits of ``md5(customer_id)`` (stored with candidates
and messages).  Shard ``k`` of ``n`` holds the buckets in ``[ceil(k·2³²/n), ceil((k+1)·2³²/n))``,
i.e. ``baton_shard(customer_id, n) = bucket·n >> 32``.  Ranges rather than ``bucket % n``:
PostgreSQL estimates a range on a column from its statistics (half the rows for one shard of
two), where it guesses 0.5% for ``bucket % n = k`` — and a planner that expects a few hundred
candidate rows instead of millions picks the wrong side of every hash join.
"""

from __future__ import annotations

HASH_SPACE = 1 << 32


def bucket_sql(key: str) -> str:
    """SQL: the 32-bit hash (``bucket``) of the text expression ``key``."""
    return f"(('x' || substr(md5({key}), 1, 8))::bit(32)::bigint)"


def bounds(shard: int, shards: int) -> tuple[int, int]:
    """The buckets ``[lo, hi)`` of ``shard`` (of ``shards``)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of 0..{shards - 1}")
    return -(-shard * HASH_SPACE // shards), -(-(shard + 1) * HASH_SPACE // shards)


def predicate(column: str, shard: int, shards: int) -> str:
    """SQL: ``column`` (a bucket) lies in ``shard``; ``true`` for a single shard."""
    if shards <= 1:
        return "true"
    lo, hi = bounds(shard, shards)
    return f"{column} >= {lo} and {column} < {hi}"


def shard_of(bucket: int, shards: int) -> int:
    """The shard of a bucket (what ``baton_shard`` computes in SQL)."""
    return bucket * shards >> 32
