"""Running the proxy: a shared listening socket, uvicorn on uvloop, SIGHUP for reloads.

The proxy binds its own socket with SO_REUSEADDR and SO_REUSEPORT so several proxy processes
can listen on one port and the kernel spreads connections between them.
"""

import asyncio
import signal
import socket

import uvicorn
import uvloop

from .app import ProxyApp
from .httphead import BoundedHeadProtocol
from .live_routes import LiveRoutes
from .metrics import ProxyMetrics
from .upstream import Upstream

GRACEFUL_SHUTDOWN_SECONDS = 35


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run(routes: LiveRoutes, sock: socket.socket) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(routes, sock))


async def _serve(routes: LiveRoutes, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, routes.reload)
    routes.reload_if_changed()
    upstream = Upstream()
    metrics = ProxyMetrics(routes.busy_by_model, lambda: routes.table.generation)
    config = uvicorn.Config(
        ProxyApp(routes, upstream, metrics),
        loop="uvloop",
        http=BoundedHeadProtocol,  # httptools, with a 431 for heads over MAX_HEAD_BYTES
        ws="none",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        await upstream.close()
