"""The gateway's token buckets against a plain token bucket, and the bound on their number."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baysense.gateway.ratelimit import TOKEN_SLACK, BucketTable


class ReferenceBucket:
    """A token bucket written the textbook way: a token count refilled by the time elapsed.

    Like BucketTable, it accepts a take when at most TOKEN_SLACK short of a whole token.
    """

    def __init__(self, rate, burst, now):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now):
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens < 1.0 - TOKEN_SLACK:
            return False
        self.tokens -= 1.0
        return True


def test_bucket_allows_burst_then_rejects():
    table = BucketTable(rate=5.0, burst=20.0, max_buckets=10)

    assert all(table.take("bay-1", 100.0) for _ in range(20))
    assert not table.take("bay-1", 100.0)
    # Another key has a bucket of its own.
    assert table.take("bay-2", 100.0)


def test_bucket_refills_at_rate():
    table = BucketTable(rate=5.0, burst=2.0, max_buckets=10)
    assert table.take("bay-1", 0.0)
    assert table.take("bay-1", 0.0)
    assert not table.take("bay-1", 0.0)

    # One token takes 1/5 s to come back.
    assert not table.take("bay-1", 0.19)
    assert table.take("bay-1", 0.21)
    assert not table.take("bay-1", 0.21)


def test_bucket_holds_at_most_burst():
    table = BucketTable(rate=5.0, burst=3.0, max_buckets=10)
    assert table.take("bay-1", 0.0)

    # An hour idle refills the bucket to its burst, not beyond.
    allowed = [table.take("bay-1", 3600.0) for _ in range(5)]
    assert allowed == [True, True, True, False, False]


def test_bucket_rejects_zero_rate():
    with pytest.raises(ValueError, match="rate must be above 0"):
        BucketTable(rate=0.0, burst=5.0, max_buckets=10)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([0.5, 5.0, 50.0]),
    burst=st.sampled_from([1.0, 2.0, 20.0, 100.0]),
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0.0, max_value=2.0)), min_size=1, max_size=80
    ),
)
def test_bucket_matches_reference(rate, burst, steps):
    table = BucketTable(rate, burst, max_buckets=10)
    reference = {}
    now = 0.0
    for key, delay in steps:
        now += delay
        expected = reference.setdefault(key, ReferenceBucket(rate, burst, now)).take(now)
        assert table.take(key, now) == expected, (key, now)


def test_bucket_table_drops_full_buckets_first():
    table = BucketTable(rate=1.0, burst=2.0, max_buckets=4)
    for key in ("idle-1", "idle-2", "idle-3"):
        assert table.take(key, 0.0)
    # "busy" spends its burst at 5 s, when the idle buckets are full again.
    assert table.take("busy", 5.0)
    assert table.take("busy", 5.0)

    # A new key makes the table sweep: the idle buckets go, and "busy" keeps its empty bucket.
    assert table.take("new-1", 5.5)
    assert len(table) == 2
    assert not table.take("busy", 5.5)


def test_bucket_table_stays_bounded_in_flood():
    table = BucketTable(rate=1.0, burst=1.0, max_buckets=100)

    # Every address sends once within the same instant, so no bucket is full again yet.
    for number in range(10_000):
        assert table.take("10.0.%d.%d" % (number // 256, number % 256), 0.0)
        assert len(table) <= 100
