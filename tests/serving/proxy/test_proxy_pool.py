"""The replica pool in process: round robin, FIFO hand-over, leaving the line, cooldowns, retirement."""

import asyncio

from cmlplan.serving.proxy.pool import Pool, Replica


class Waiter:
    """Records what the pool handed over."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.given: list[Replica | None] = []

    def assign(self, replica: Replica | None) -> None:
        self.given.append(replica)


def pool_of(count: int) -> Pool:
    pool = Pool("model.p/m")
    pool.set_replicas(tuple(Replica(f"r{i}", f"http://127.0.0.1:{i}") for i in range(count)))
    return pool


def test_round_robin_among_free_replicas():
    pool = pool_of(3)
    taken = []
    for _ in range(3):
        replica = pool.acquire(Waiter())
        assert replica is not None and replica.busy
        taken.append(replica.id)
        pool.release(replica)
        assert not replica.busy
    assert taken == ["r0", "r1", "r2"]


def test_waiters_get_the_freed_replica_in_arrival_order():
    pool = pool_of(1)
    held = pool.acquire(Waiter())
    a, b, c = Waiter("a"), Waiter("b"), Waiter("c")
    assert [pool.acquire(w) for w in (a, b, c)] == [None, None, None]
    pool.release(held)  # handed straight over: it stays busy
    assert (a.given, b.given, c.given) == ([held], [], []) and held.busy
    pool.release(held)
    assert (b.given, c.given) == ([held], [])
    pool.release(held)
    assert c.given == [held]
    pool.release(held)
    assert not held.busy


def test_a_newcomer_does_not_pass_the_line():
    pool = pool_of(2)
    first, second = pool.acquire(Waiter()), pool.acquire(Waiter())
    queued = Waiter("queued")
    assert pool.acquire(queued) is None
    pool.release(first)
    assert queued.given == [first]
    assert pool.acquire(Waiter("late")) is None  # second is busy, first went to the queued one
    assert second is not None


def test_a_retry_goes_to_the_head_of_the_line():
    pool = pool_of(1)
    held = pool.acquire(Waiter())
    back, retried = Waiter("back"), Waiter("retried")
    pool.acquire(back)
    pool.acquire(retried, first=True)
    pool.release(held)
    assert retried.given == [held] and back.given == []


def test_a_waiter_that_leaves_is_not_served():
    pool = pool_of(1)
    held = pool.acquire(Waiter())
    gone, stays = Waiter("gone"), Waiter("stays")
    pool.acquire(gone)
    pool.acquire(stays)
    assert pool.leave(gone) and not pool.leave(gone)
    pool.release(held)
    assert gone.given == [] and stays.given == [held]


def test_cooling_replica_is_skipped_then_handed_to_the_waiter():
    async def scenario():
        pool = pool_of(2)
        first = pool.acquire(Waiter())
        pool.release(first, 0.05, down=True)
        second = pool.acquire(Waiter())
        assert second is not first
        waiter = Waiter()
        assert pool.acquire(waiter) is None  # second is busy, first cools for 50 ms
        await asyncio.sleep(0.2)
        return first, waiter.given

    first, given = asyncio.run(scenario())
    assert given == [first]


def test_retired_pool_tells_waiters_there_is_none():
    pool = pool_of(1)
    pool.acquire(Waiter())
    waiter = Waiter()
    assert pool.acquire(waiter) is None
    pool.set_replicas(())
    assert waiter.given == [None]
