"""Entry point: ``python -m cmlplan.serving.proxy --routes PATH --host H --port P``.

Exit code 3 when the routing file cannot be loaded at start or the port cannot be bound (one
line on stderr). SIGHUP reloads the routing file; SIGTERM/SIGINT shut down gracefully.
"""

import argparse
import logging
import signal
import sys
from pathlib import Path

from ..store import StoreError
from .live_routes import LiveRoutes
from .recorder import Recorder, store_url
from .routes import RoutesError
from .server import bind_socket, run

STARTUP_FAILURE_EXIT = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cmlplan.serving.proxy", description=__doc__)
    parser.add_argument("--routes", required=True, type=Path, help="routing table JSON (docs/internals.md)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an early SIGHUP must not kill us before the loop runs
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        routes = LiveRoutes(args.routes)
        sock = bind_socket(args.host, args.port)
    except (RoutesError, OSError) as exc:
        print(f"cmlplan proxy: cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE_EXIT)
    logging.getLogger("cmlplan.proxy").info(
        "serving on http://%s:%d, routes generation %d", args.host, args.port, routes.table.generation
    )
    try:
        url = store_url(routes.table, args.routes)
    except StoreError as exc:  # predictions are still served; metrics calls answer this
        logging.getLogger("cmlplan.proxy").error("%s", exc)
        recorder = Recorder(None)
        recorder.error = str(exc)
    else:
        recorder = Recorder(url)
    recorder.start()
    run(routes, sock, recorder)


if __name__ == "__main__":
    main()
