import asyncio
import socket

import pytest

from services.gateway.admission import estimate_prompt_tokens
from services.gateway.quotas import (
    BudgetExceededError,
    InProcessLimiter,
    Limits,
    QuotaBackendError,
    RateLimitedError,
    Reservation,
)
from services.gateway.redis_quotas import RedisLimiter
from services.gateway.settings import GatewayServiceSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def nothing_spent(_: str) -> int:
    return 0


def run(coro):
    return asyncio.run(coro)


def test_tokens_per_minute_are_a_sliding_window():
    clock = Clock()
    limiter = InProcessLimiter(nothing_spent, clock)

    async def scenario():
        await limiter.reserve("k", 60, Limits(tpm=100))
        clock.now += 30
        await limiter.reserve("k", 40, Limits(tpm=100))
        with pytest.raises(RateLimitedError) as info:
            await limiter.reserve("k", 10, Limits(tpm=100))
        assert info.value.retry_after_s == pytest.approx(30.0)  # when the first 60 expire
        clock.now += 30.5
        await limiter.reserve("k", 50, Limits(tpm=100))

    run(scenario())


def test_reconcile_returns_what_was_not_used():
    limiter = InProcessLimiter(nothing_spent, Clock())

    async def scenario():
        reservation = await limiter.reserve("k", 90, Limits(tpm=100))
        with pytest.raises(RateLimitedError):
            await limiter.reserve("k", 20, Limits(tpm=100))
        await limiter.reconcile(reservation, 15)
        await limiter.reserve("k", 80, Limits(tpm=100))
        await limiter.reconcile(reservation, 99)  # settling twice changes nothing
        await limiter.reserve("k", 5, Limits(tpm=100))

    run(scenario())


def test_requests_per_minute():
    clock = Clock()
    limiter = InProcessLimiter(nothing_spent, clock)

    async def scenario():
        for _ in range(3):
            await limiter.reserve("k", 1, Limits(rpm=3))
        with pytest.raises(RateLimitedError) as info:
            await limiter.reserve("k", 1, Limits(rpm=3))
        assert info.value.retry_after_s == pytest.approx(60.0)
        await limiter.reserve("other", 1, Limits(rpm=3))  # keys do not share windows

    run(scenario())


def test_concurrent_reservations_never_overspend():
    limiter = InProcessLimiter(nothing_spent, Clock())

    async def scenario():
        async def one():
            try:
                await limiter.reserve("k", 7, Limits(tpm=100))
                return 7
            except RateLimitedError:
                return 0

        return sum(await asyncio.gather(*(one() for _ in range(100))))

    assert run(scenario()) == 98


def test_budget_starts_from_what_was_spent_before():
    async def spent_before(_: str) -> int:
        return 90

    limiter = InProcessLimiter(spent_before, Clock())

    async def scenario():
        await limiter.reserve("k", 10, Limits(budget=100))
        with pytest.raises(BudgetExceededError, match="budget of 100"):
            await limiter.reserve("k", 1, Limits(budget=100))

    run(scenario())


def test_a_request_larger_than_the_limit_says_so():
    limiter = InProcessLimiter(nothing_spent, Clock())
    with pytest.raises(RateLimitedError, match="lower max_tokens") as info:
        run(limiter.reserve("k", 500, Limits(tpm=100)))
    assert info.value.retry_after_s is None


def test_prompt_estimate_bounds_byte_level_tokens():
    assert estimate_prompt_tokens(["hello"], overhead=0) == 5
    assert estimate_prompt_tokens(["héllo", "日本"], overhead=4) == 6 + 6 + 12


# -- Redis down: LATHE_GATEWAY_REDIS_FAILURE_MODE ------------------------------------------
@pytest.fixture
def redis_down() -> str:
    """A Redis URL on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.fault
def test_redis_down_fails_closed_by_default_naming_the_setting(redis_down, clean_lathe_env):
    assert GatewayServiceSettings().redis_failure_mode == "closed"
    limiter = RedisLimiter(redis_down, nothing_spent)

    async def scenario():
        try:
            with pytest.raises(QuotaBackendError) as info:
                await limiter.reserve("k", 10, Limits(tpm=100))
            # Settling a reservation made before Redis went away only over-counts; it never fails the request.
            await limiter.reconcile(Reservation("k", "m:10", 10, 0.0), 3)
        finally:
            await limiter.close()
        return info.value

    error = run(scenario())
    assert error.status_code == 503 and error.code == "quota_backend_unavailable"
    assert "Redis" in error.message and "LATHE_GATEWAY_REDIS_FAILURE_MODE=closed" in error.message


@pytest.mark.fault
def test_redis_down_admits_uncounted_when_set_to_fail_open(redis_down):
    limiter = RedisLimiter(redis_down, nothing_spent, failure_mode="open")

    async def scenario():
        try:
            reservation = await limiter.reserve("k", 10, Limits(rpm=1, tpm=100, budget=50))
            await limiter.reconcile(reservation, 10)  # nothing reserved, nothing to settle
            return reservation, await limiter.reserve("k", 10, Limits(rpm=1))
        finally:
            await limiter.close()

    first, second = run(scenario())
    assert first is None and second is None  # admitted past the RPM limit: Redis could not count
