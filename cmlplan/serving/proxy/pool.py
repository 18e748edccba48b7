"""Per-model replica pools: round robin among free replicas, FIFO waiting when all are busy.

Replicas serve one prediction at a time, so a replica is either free or busy from this proxy's
point of view. A freed replica is handed straight to the oldest waiter (no barging by newcomers).
A replica can also be *cooling*: refused the connection (down for ~1 s) or answered
``replica.busy`` because another proxy process is using it; waiters are woken when it cools off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .upstream import ReplicaConnection


class Replica:
    """One replica process, kept by URL across routing reloads so its state survives them."""

    __slots__ = ("id", "url", "busy", "available_at", "down", "conn", "request_head")

    def __init__(self, replica_id: str, url: str) -> None:
        self.id = replica_id
        self.url = url
        self.busy = False
        self.available_at = 0.0  # monotonic time before which the replica is not tried
        self.down = False  # the cooling is due to a refused connection
        self.conn: ReplicaConnection | None = None  # the proxy's one connection to it (upstream.py)
        self.request_head: bytes | None = None

    def disconnect(self) -> None:
        """Drop the replica's connection: it left the routing table."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def usable(self, now: float) -> bool:
        return not self.busy and self.available_at <= now


class Pool:
    """The replicas of one model (kept by model address across reloads) and its waiting line."""

    __slots__ = ("address", "replicas", "_cursor", "_waiters")

    def __init__(self, address: str) -> None:
        self.address = address
        self.replicas: tuple[Replica, ...] = ()
        self._cursor = 0
        self._waiters: deque[asyncio.Future[Replica | None]] = deque()

    def set_replicas(self, replicas: tuple[Replica, ...]) -> None:
        """Switch to a new replica set; requests already holding a replica keep it."""
        for replica in self.replicas:
            if replica not in replicas and not replica.busy:
                replica.disconnect()
        self.replicas = replicas
        self._cursor = 0
        if replicas:
            self._dispatch()
        else:
            self.close()

    def close(self) -> None:
        """The model left the routing table or has no replicas: wake every waiter empty-handed."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for replica in self.replicas:
            if not replica.busy:
                replica.disconnect()

    async def acquire(self, deadline: float, *, first: bool = False) -> Replica | None:
        """A replica marked busy for the caller, or None when none was free before deadline.

        ``first`` puts a retrying request at the head of the line rather than at the back.
        """
        if not self._waiters:
            replica = self._take_free()
            if replica is not None:
                return replica
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Replica | None] = loop.create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        timer = loop.call_later(max(0.0, deadline - monotonic()), self._time_out, waiter)
        try:
            return await waiter
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            timer.cancel()

    def release(self, replica: Replica, cooldown: float = 0.0, *, down: bool = False) -> None:
        """Give a replica back; with cooldown it is not tried again for that many seconds."""
        if cooldown > 0:
            replica.available_at = until = monotonic() + cooldown
            replica.down = down
            asyncio.get_running_loop().call_later(cooldown, self._cooled, replica, until)
        else:
            replica.down = False
        if replica not in self.replicas:  # retired while it ran this request
            replica.busy = False
            replica.disconnect()
            return
        if self._waiters and replica.available_at <= monotonic():
            while self._waiters:  # hand over directly: the replica stays busy
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(replica)
                    return
        replica.busy = False

    def busy_count(self) -> int:
        return sum(1 for replica in self.replicas if replica.busy)

    def all_down(self) -> bool:
        """True when every replica refused its last connection within its cooldown."""
        now = monotonic()
        return bool(self.replicas) and all(r.down and r.available_at > now for r in self.replicas)

    def _take_free(self) -> Replica | None:
        replicas = self.replicas
        count = len(replicas)
        if count == 0:
            return None
        now = monotonic()
        start = self._cursor
        for offset in range(count):
            index = (start + offset) % count
            replica = replicas[index]
            if replica.usable(now):
                replica.busy = True
                self._cursor = index + 1
                return replica
        return None

    def _cooled(self, replica: Replica, until: float) -> None:
        # The loop's timer clock is coarser than monotonic(): end the cooldown explicitly rather
        # than trusting that available_at has passed when the timer fires.
        if replica.available_at == until:
            replica.available_at = 0.0
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters:
            replica = self._take_free()
            if replica is None:
                return
            waiter = self._waiters.popleft()
            if waiter.done():
                replica.busy = False
                continue
            waiter.set_result(replica)

    def _abandon(self, waiter: asyncio.Future[Replica | None]) -> None:
        """Leave the line (cancelled); a replica handed over in the same instant goes back to the pool."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled():
            replica = waiter.result()
            if replica is not None:
                self.release(replica)
        else:
            waiter.cancel()

    def _time_out(self, waiter: asyncio.Future[Replica | None]) -> None:
        """The deadline passed while waiting: leave the line, the request gets None (429)."""
        if not waiter.done():
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            waiter.set_result(None)
