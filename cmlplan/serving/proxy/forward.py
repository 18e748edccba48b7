"""Forwarding one prediction: acquire a replica, call it, retry elsewhere if it cannot take it.

Retries cost busy_timeout, not extra attempts: a request keeps looking for a replica able to
start its prediction until busy_timeout is spent, then answers 429 (or 503 when every replica
refuses connections). Once a replica started the prediction there is no retry.
"""

from time import monotonic
from typing import Protocol

from .errors import ProxyError
from .pool import Pool
from .upstream import Answer, Retry, Upstream


class Call(Protocol):
    """The request being forwarded: ``at_replica`` tells its connection it may no longer be dropped."""

    at_replica: bool
    replica: str


async def forward(
    upstream: Upstream, pool: Pool, body: bytes, busy_timeout: float, request_timeout: float, call: Call
) -> Answer:
    deadline = monotonic() + busy_timeout
    retrying = False
    while True:
        call.at_replica = False
        replica = await pool.acquire(deadline, first=retrying)
        if replica is None:
            raise _no_replica(pool, busy_timeout)
        call.at_replica = True
        call.replica = replica.id
        try:
            reply = await upstream.predict(replica, body, pool.address, request_timeout)
        except Retry as retry:
            pool.release(replica, retry.cooldown, down=retry.down)
            retrying = True
            continue
        except BaseException:
            pool.release(replica)
            raise
        pool.release(replica)
        return reply


def _no_replica(pool: Pool, busy_timeout: float) -> ProxyError:
    if not pool.replicas:
        return ProxyError(503, "model.unavailable", "the model has no running replicas")
    if pool.all_down():
        return ProxyError(503, "model.unavailable", "no replica of the model is reachable")
    return ProxyError(429, "model.busy", f"all replicas stayed busy for {busy_timeout:g} seconds")
