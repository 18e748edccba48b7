"""Per-model replica pools: round robin among free replicas, FIFO waiting when all are busy.

Replicas serve one prediction at a time, so a replica is either free or busy from this proxy's
point of view. A freed replica is handed straight to the oldest waiter (no barging by newcomers),
by calling the waiter: no future, no task, no timer per request. A replica can also be *cooling*:
refused the connection (down for ~1 s) or answered ``replica.busy`` because another proxy process
is using it; waiters are offered it again when it cools off.

Waiters do not time out here: their owner (call.py) checks its own deadline on a coarse tick
and calls ``leave``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .upstream import ReplicaConnection


class Waiter(Protocol):
    """A request waiting for a replica: ``assign`` hands it one (marked busy for it), or None."""

    def assign(self, replica: Replica | None) -> None: ...


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
        self._waiters: deque[Waiter] = deque()

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
        """The model left the routing table or has no replicas: every waiter is told there is none."""
        while self._waiters:
            self._waiters.popleft().assign(None)
        for replica in self.replicas:
            if not replica.busy:
                replica.disconnect()

    def acquire(self, waiter: Waiter, *, first: bool = False) -> Replica | None:
        """A free replica, marked busy for the caller; else the caller joins the line and gets None.

        ``first`` puts a retrying request at the head of the line rather than at the back. A
        waiter in the line is later given a replica, or None, through ``waiter.assign``.
        """
        if not self._waiters:
            replica = self._take_free()
            if replica is not None:
                return replica
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        return None

    def leave(self, waiter: Waiter) -> bool:
        """Take waiter out of the line (its deadline passed or its client left); False if not in it."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return False
        return True

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def queued_per_replica(self) -> float:
        """Calls waiting for a replica, per replica: how long the replicas stay busy without new calls."""
        return len(self._waiters) / max(1, len(self.replicas))

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
        if cooldown <= 0 and self._waiters:
            # hand over directly: the replica stays busy, and the waiter sends its request now
            self._waiters.popleft().assign(replica)
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
        now = 0.0
        start = self._cursor
        for offset in range(count):
            index = (start + offset) % count
            replica = replicas[index]
            if replica.busy:
                continue
            if replica.available_at:  # cooling, or cooled: only then is the clock read
                now = now or monotonic()
                if replica.available_at > now:
                    continue
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
            self._waiters.popleft().assign(replica)
