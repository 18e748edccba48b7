"""Entry point: ``python -m cmlplan.serving.replica --source DIR --file F --function FN ...``.

Exit codes: 3 when the model cannot be loaded or the port cannot be bound (one line on stderr says
why); 70 when a prediction ran longer than ``--prediction-timeout`` (the watchdog ends the process so
its supervisor starts a fresh replica). On SIGTERM the server stops listening and lets an in-flight
prediction finish and be answered (up to GRACEFUL_SHUTDOWN_SECONDS) before the process exits 0.
"""

import argparse
import logging
import sys
from pathlib import Path

import uvloop

from ..metrics.shim import SHIM_DIR
from .app import ReplicaApp
from .http import ReplicaServer
from .limits import limit_memory
from .loader import ModelLoadError, load_model
from .usage import SOURCES, UsageReporter
from .watchdog import Watchdog
from .worker import PredictionWorker

LOAD_FAILURE_EXIT = 3
GRACEFUL_SHUTDOWN_SECONDS = 35
# Longer than the proxy's keep-alive, so the proxy never reuses a connection the replica just closed.
KEEP_ALIVE_SECONDS = 120


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cmlplan.serving.replica", description=__doc__)
    parser.add_argument("--source", required=True, type=Path, help="project source dir (becomes the cwd)")
    parser.add_argument("--file", required=True, help="model file, relative to --source")
    parser.add_argument("--function", required=True, help="function called with the request value")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--replica-id", required=True)
    parser.add_argument("--memory-bytes", type=int, default=None, help="RLIMIT_DATA for the whole process")
    parser.add_argument(
        "--prediction-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit with code 70 when one prediction runs longer than this (0, the default: never)",
    )
    parser.add_argument(
        "--usage-source",
        choices=SOURCES,
        default="psutil",
        help="where GET /usage reads CPU and memory: this process tree (psutil, the default), the "
        "container's cgroup, or none",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    worker = PredictionWorker()  # its thread stack is mapped before the memory limit applies
    if args.memory_bytes is not None:
        limit_memory(args.memory_bytes)
    sys.path.append(str(SHIM_DIR))  # ``import cdsw`` for CML model code; a project's own cdsw wins
    try:
        predict = load_model(args.source, args.file, args.function)
    except ModelLoadError as exc:
        print(f"cmlplan replica {args.replica_id}: cannot load model: {exc}", file=sys.stderr, flush=True)
        sys.exit(LOAD_FAILURE_EXIT)
    if args.prediction_timeout > 0:
        Watchdog(worker, args.prediction_timeout).start()
    app = ReplicaApp(predict, args.replica_id, worker, UsageReporter(args.usage_source, args.replica_id))
    server = ReplicaServer(app, keep_alive_seconds=KEEP_ALIVE_SECONDS, graceful_seconds=GRACEFUL_SHUTDOWN_SECONDS)
    try:
        uvloop.run(server.serve(args.host, args.port))
    except OSError as exc:
        print(f"cmlplan replica {args.replica_id}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        sys.exit(LOAD_FAILURE_EXIT)

if __name__ == "__main__":
    main()
