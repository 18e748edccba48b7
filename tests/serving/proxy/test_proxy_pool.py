"""The replica pool in process: round robin, FIFO hand-over, cooldowns, timeouts."""

import asyncio
from time import monotonic

from cmlplan.serving.proxy.pool import Pool, Replica


def pool_of(count: int) -> Pool:
    pool = Pool("model.p/m")
    pool.set_replicas(tuple(Replica(f"r{i}", f"http://127.0.0.1:{i}") for i in range(count)))
    return pool


def test_round_robin_among_free_replicas():
    async def scenario():
        pool = pool_of(3)
        taken = []
        for _ in range(3):
            replica = await pool.acquire(monotonic() + 1)
            taken.append(replica.id)
            pool.release(replica)
        return taken

    assert asyncio.run(scenario()) == ["r0", "r1", "r2"]


def test_waiters_get_the_freed_replica_in_arrival_order():
    async def scenario():
        pool = pool_of(1)
        held = await pool.acquire(monotonic() + 1)
        order = []

        async def wait(tag):
            replica = await pool.acquire(monotonic() + 2)
            order.append(tag)
            await asyncio.sleep(0)
            pool.release(replica)

        tasks = [asyncio.create_task(wait(tag)) for tag in "abc"]
        await asyncio.sleep(0.01)
        pool.release(held)
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_acquire_times_out_and_leaves_the_line():
    async def scenario():
        pool = pool_of(1)
        held = await pool.acquire(monotonic() + 1)
        assert await pool.acquire(monotonic() + 0.05) is None
        pool.release(held)
        return held.busy

    assert asyncio.run(scenario()) is False


def test_cooling_replica_is_skipped_then_handed_to_the_waiter():
    async def scenario():
        pool = pool_of(2)
        first = await pool.acquire(monotonic() + 1)
        pool.release(first, 0.05, down=True)
        second = await pool.acquire(monotonic() + 1)
        assert second is not first
        waited = await pool.acquire(monotonic() + 1)  # second is busy, first cools for 50 ms
        return first, waited

    first, waited = asyncio.run(scenario())
    assert waited is first


def test_retired_pool_wakes_waiters_empty_handed():
    async def scenario():
        pool = pool_of(1)
        await pool.acquire(monotonic() + 1)
        waiter = asyncio.create_task(pool.acquire(monotonic() + 5))
        await asyncio.sleep(0.01)
        pool.set_replicas(())
        return await asyncio.wait_for(waiter, 1)

    assert asyncio.run(scenario()) is None
