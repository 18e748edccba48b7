"""All client connections of a proxy process: the connection cap, eviction, and one deadline timer.

The cap stays below the file-descriptor limit (raised to its hard value at start), with room for
the replicas' connections, logs and the routing file. At the cap, a new connection takes the place
of the connection that has gone longest without finishing a request and has none running: a
client holding connections open without completing requests (slowloris) pushes out its own
connections, not a normal client's, which finish requests and move to the back of the line. When
every connection has a request running, the new one is answered 503 and closed.

Deadlines (head, body, keep-alive idle, lingering close) are checked by one timer every
``SWEEP_SECONDS`` for all connections, rather than by one timer per connection and read.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from time import monotonic
from typing import TYPE_CHECKING

from .errors import error_body
from .live_routes import LiveRoutes
from .responses import response

if TYPE_CHECKING:
    from .connection import Connection
    from .handler import Handler

log = logging.getLogger("cmlplan.proxy")

SWEEP_SECONDS = 0.5
FD_RESERVE = 128  # descriptors kept for replica connections, logs, the routing file, the listener
MIN_CONNECTIONS = 16
_FULL = response(
    503, error_body("proxy.overloaded", "the proxy has as many connections open as it can hold"), close=True
)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel caps lower
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def connection_cap(fd_limit: int) -> int:
    return max(MIN_CONNECTIONS, fd_limit - FD_RESERVE)


class Hub:
    def __init__(self, routes: LiveRoutes, handler: Handler, cap: int) -> None:
        self.routes = routes
        self.handler = handler
        self.cap = cap
        self.closing = False
        self.evicted = 0
        self._connections: OrderedDict[Connection, None] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._connections)

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def add(self, conn: Connection) -> None:
        connections = self._connections
        if len(connections) >= self.cap and not self._evict_one():
            self.handler.count_refusal(503)
            if conn.transport is not None:
                conn.transport.write(_FULL)
                conn.transport.close()
            return
        connections[conn] = None
        self._idle.clear()

    def remove(self, conn: Connection) -> None:
        self._connections.pop(conn, None)
        if not self._connections:
            self._idle.set()

    def touch(self, conn: Connection) -> None:
        """conn just finished a request: it is the last to be pushed out."""
        if conn in self._connections:
            self._connections.move_to_end(conn)

    def _evict_one(self) -> bool:
        for victim in self._connections:
            if victim.evictable():
                self._connections.pop(victim)
                victim.abort()
                self.evicted += 1
                if self.evicted == 1 or self.evicted % 1000 == 0:
                    log.warning(
                        "at the cap of %d connections: closed %d idle or slow ones", self.cap, self.evicted
                    )
                return True
        return False

    def _sweep(self) -> None:
        now = monotonic()
        try:
            late = [conn for conn in self._connections if conn.deadline <= now and conn.evictable()]
            for conn in late:
                conn.timed_out()
        finally:
            self._timer = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    async def shut_down(self, grace: float) -> None:
        """Close idle connections now; wait up to grace for the requests running to be answered."""
        self.closing = True
        for conn in list(self._connections):
            conn.close_when_idle()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("%d connections still busy after %.0fs: closing them", len(self._connections), grace)
        for conn in list(self._connections):
            conn.abort()
        if self._timer is not None:
            self._timer.cancel()
