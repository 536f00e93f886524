"""Failed sign-ins are limited per address and per username, in a sliding window: the clock is
injected, nothing sleeps."""

from __future__ import annotations

from voice_server.auth.ratelimit import FailureLimiter, address_key, username_key

ADDRESS, NAME = address_key("203.0.113.7"), username_key("ms.rivera")


def limiter(now: list[float], **kwargs: int) -> FailureLimiter:
    return FailureLimiter(kwargs.get("max_failures", 5), kwargs.get("window_s", 900), clock=lambda: now[0],
                          max_tracked=kwargs.get("max_tracked", 100_000))


def test_five_failures_within_the_window_block_the_next_try_until_the_oldest_leaves_it():
    now = [1000.0]
    limits = limiter(now)
    for second in range(5):
        assert limits.retry_after([ADDRESS, NAME]) is None
        now[0] = 1000.0 + second * 10
        limits.failed([ADDRESS, NAME])
    now[0] = 1050.0
    assert limits.retry_after([ADDRESS, NAME]) == 850  # the first failure (t=1000) leaves at 1900
    now[0] = 1899.5
    assert limits.retry_after([ADDRESS]) == 1  # whole seconds, never 0
    now[0] = 1900.0
    assert limits.retry_after([ADDRESS, NAME]) is None  # one slot free again
    limits.failed([ADDRESS, NAME])
    assert limits.retry_after([ADDRESS, NAME]) == 10  # the next oldest (t=1010) leaves at 1910


def test_either_key_over_the_limit_blocks_and_other_keys_are_untouched():
    now = [0.0]
    limits = limiter(now, max_failures=2)
    limits.failed([ADDRESS, username_key("a")])
    limits.failed([ADDRESS, username_key("b")])
    assert limits.retry_after([ADDRESS, username_key("c")]) is not None  # the address guessed enough
    assert limits.retry_after([address_key("198.51.100.1"), username_key("a")]) is None
    assert limits.retry_after([address_key("198.51.100.1"), NAME]) is None


def test_failures_spread_wider_than_the_window_never_block():
    now = [0.0]
    limits = limiter(now)
    for _ in range(50):
        limits.failed([ADDRESS])
        now[0] += 181  # five of these span more than 900 s
        assert limits.retry_after([ADDRESS]) is None


def test_forgetting_a_username_clears_only_its_count():
    now = [0.0]
    limits = limiter(now, max_failures=1)
    limits.failed([ADDRESS, NAME])
    limits.forget(NAME)
    assert limits.retry_after([NAME]) is None
    assert limits.retry_after([ADDRESS]) is not None


def test_usernames_are_held_as_digests_and_the_memory_is_bounded():
    assert "rivera" not in NAME and username_key(" MS.Rivera ") == NAME
    now = [0.0]
    limits = limiter(now, max_tracked=100)
    for n in range(1000):
        limits.failed([username_key(f"user{n}")])
    assert len(limits._failures) <= 100
    assert limits.retry_after([username_key("user999")]) is None  # one failure is under the limit
