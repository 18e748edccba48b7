"""The store writer process (``python -m cmlplan.serving.store.writer_process FD``), child of a proxy.

It reads the opener from the socket pair, opens and migrates the store, says so (None, or the
error), then loops: wait for a frame, take every other frame already waiting (up to MAX_FRAMES),
run them all in one transaction, commit once, answer each frame in order. It
ignores SIGINT, SIGTERM and SIGHUP: it ends when the proxy closes its end (also when the proxy
is killed), after committing and answering what it read. See writer.py for the proxy's side.
"""

from __future__ import annotations

import logging
import pickle
import signal
import socket
import sys
from typing import Any

from .backend import Store, StoreError
from .frames import encode, read_frame, split, write_frame
from .records import UnknownPrediction, WrongProject

log = logging.getLogger("cmlplan.proxy.store-writer")

RECV_BYTES = 65536
MAX_FRAMES = 1024  # frames taken into one transaction at most (each is one turn of the proxy's loop)
_REFUSALS = (UnknownPrediction, WrongProject, ValueError)
Frame = tuple[list[tuple[Any, ...]], list[bytes]]  # prediction rows, pickled operations
Answer = tuple["BaseException | None", list[tuple[Any, "BaseException | None"]]]


def main(fd: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=fd)
    try:
        opener = read_frame(sock)
        store = opener()
        store.migrate()
    except EOFError:
        return
    except StoreError as exc:
        write_frame(sock, str(exc))
        return
    except Exception as exc:  # a broken opener: say so rather than die silently
        write_frame(sock, f"cannot open the metrics store: {type(exc).__name__}: {exc}")
        return
    write_frame(sock, None)
    try:
        serve(sock, store)
    finally:
        store.close()


def serve(sock: socket.socket, store: Store) -> None:
    buffer = bytearray()
    ended = False
    while not ended:
        payloads: list[bytes] = []
        while not payloads:  # block until one whole frame is here
            data = sock.recv(RECV_BYTES)
            if not data:
                return
            buffer += data
            payloads, used = split(buffer)
            del buffer[:used]
        while True:  # and take what else is already waiting, without waiting for more
            try:
                data = sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                ended = True
                break
            buffer += data
            more, used = split(buffer)
            del buffer[:used]
            payloads += more
            if len(payloads) >= MAX_FRAMES:
                break
        batch: list[Frame] = [pickle.loads(payload) for payload in payloads]
        sock.sendall(b"".join(encode(answer) for answer in write_batch(store, batch)))


def write_batch(store: Store, batch: list[Frame]) -> list[Answer]:
    """Run a batch in one transaction; one answer per frame: (error of its rows, [(result, error)])."""
    rows = [row for frame_rows, _ops in batch for row in frame_rows]
    answers: list[Answer] = []
    try:
        if rows:  # one executemany for the batch's predictions, before what may refer to them
            store.insert_rows(rows)
        for _rows, operations in batch:
            results: list[tuple[Any, BaseException | None]] = []
            for pickled in operations:
                try:
                    operation = pickle.loads(pickled)
                except Exception as exc:
                    results.append((None, StoreError(f"metrics store: cannot read an operation: {exc}")))
                    continue
                try:
                    results.append((operation(store), None))
                except _REFUSALS as exc:
                    results.append((None, exc))
            answers.append((None, results))
        store.commit()
    except StoreError as exc:
        store.rollback()
        log.error("metrics store: %d writes refused: %s", len(rows) + sum(len(o) for _r, o in batch), exc)
        return [(exc, [(None, exc)] * len(operations)) for _rows, operations in batch]
    except Exception as exc:  # a bug in an operation: fail the batch rather than the process
        store.rollback()
        log.exception("metrics store: unexpected error in a batch")
        error = StoreError(f"metrics store: unexpected error: {exc}")
        return [(error, [(None, error)] * len(operations)) for _rows, operations in batch]
    return answers


if __name__ == "__main__":
    main(int(sys.argv[1]))
