"""Running the proxy: a shared listening socket, our own HTTP/1.1 server on uvloop, signals.

The proxy binds its own socket with SO_REUSEADDR and SO_REUSEPORT so several proxy processes
can listen on one port and the kernel spreads connections between them. SIGHUP reloads the
routing table; SIGTERM and SIGINT stop accepting, close idle connections and let running
predictions answer (up to GRACEFUL_SHUTDOWN_SECONDS) before the process exits.
"""

import asyncio
import logging
import signal
import socket
import sys

import uvloop

from .connection import Connection
from .handler import Handler
from .hub import Hub, connection_cap, raise_fd_limit
from .live_routes import LiveRoutes
from .metrics import ProxyMetrics
from .recorder import Recorder
from .upstream import Upstream
from .usage import ReplicaUsage

GRACEFUL_SHUTDOWN_SECONDS = 35
BACKLOG = 2048
SWITCH_INTERVAL = 0.0005

log = logging.getLogger("cmlplan.proxy")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def run(routes: LiveRoutes, sock: socket.socket, recorder: Recorder | None = None) -> None:
    cap = connection_cap(raise_fd_limit())
    recorder = recorder or Recorder(None)
    # The metrics writer thread needs the GIL for a moment per batch while the loop is busy; at the
    # default 5 ms switch interval each group commit would add two such waits to every answer.
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(routes, sock, cap, recorder))
    finally:
        recorder.stop()


async def _serve(routes: LiveRoutes, sock: socket.socket, cap: int, recorder: Recorder) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, routes.reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    routes.reload_if_changed()
    metrics = ProxyMetrics(routes.busy_by_model, lambda: routes.table.generation)
    handler = Handler(routes, Upstream(), metrics, recorder)
    technical = handler.technical
    technical.flush_seconds = routes.table.technical_flush_seconds
    technical.retention_ms = int(routes.table.metrics_retention_days * 86_400_000)
    metrics.registry.register(technical)
    metrics.registry.register(recorder)
    technical.start()
    usage = ReplicaUsage(lambda: routes.table, recorder, technical.flush_seconds, routes.table.metrics_retention_days)
    metrics.registry.register(usage)
    usage.start()
    hub = Hub(routes, handler, cap)
    metrics.connections_source = hub.__len__
    server = await loop.create_server(lambda: Connection(hub), sock=sock, backlog=BACKLOG)
    hub.start()
    log.info("accepting up to %d connections", cap)
    await stop.wait()
    log.info("shutting down: letting running predictions answer")
    server.close()
    await hub.shut_down(GRACEFUL_SHUTDOWN_SECONDS)
    await handler.shut_down()
    await usage.stop()
    await technical.stop()  # the last counts reach the store before the writer stops
    for pool in routes.table.pools():
        pool.close()
