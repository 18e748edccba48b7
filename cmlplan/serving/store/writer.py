"""The proxy's single writer: a child process, group commit, results handed back to the event loop.

Requests hand an operation to ``put`` (or await ``submit``). Everything queued while the process
writes a batch goes to it in one frame over a socket pair as soon as that batch is answered; the
process runs a frame in one transaction and commits once, so N concurrent predictions cost one
fsync and two syscalls on the loop; the loop then settles the frame's operations in order.

A process rather than a thread: a writer thread needs the GIL twice per batch while the loop is
busy, and every such hand-over stalls the loop and wakes it through its self-pipe; the process
shares no lock with the loop, whose only costs are one write per turn and one read per answer.

A refused operation (unknown UUID, other project) fails alone; a database error (full, read-only,
connection lost) rolls the batch back and fails every operation in it with StoreError: nothing
half-written, nothing already stored touched. If the process dies, what it had not answered fails
with StoreError and a new process is started; the proxy never waits for it on a request.

Operations cross a process boundary, so they must pickle: ``operator.methodcaller("add_delayed",
...)`` or a module-level function, never a lambda. Prediction rows travel as plain tuples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from . import frames
from .backend import Store, StoreError, open_store
from .frames import read_frame, write_frame
from .records import PredictionRow

log = logging.getLogger("cmlplan.proxy")

Operation = Callable[[Store], Any]
Opener = Callable[[], Store]
Settled = Callable[[Any, "BaseException | None"], None]  # (result, error), called on the loop
Row = tuple[str, str, str, str, str, str, int, str]  # PredictionRow's fields, in its order

RECV_BYTES = 65536  # below malloc's mmap threshold: a bigger buffer costs three syscalls per read
START_TIMEOUT = 60.0  # opening PostgreSQL (10 s connect timeout) and migrating
RESTART_SECONDS = 1.0  # after the process died; five times that after it could not open the store


class StoreWriter:
    def __init__(self, opener: Opener) -> None:
        """opener (picklable) runs in the writer process; its StoreError surfaces from ``start``."""
        self._opener = opener
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False
        self._error: StoreError | None = None  # the process could not open the store
        self._rows: list[Row] = []
        self._row_waiters: list[Settled] = []
        self._ops: list[bytes] = []  # pickled one by one: one that cannot be read fails alone
        self._op_waiters: list[Settled] = []
        self._flush_scheduled = False
        self._outgoing = bytearray()
        self._sent: deque[tuple[list[Settled], list[Settled]]] = deque()
        self._incoming = bytearray()
        self._stopping = False
        self._restart: asyncio.TimerHandle | None = None
        self.batches = 0  # frames answered by the writer (several share a commit under load)
        self.operations = 0

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the writer process and wait until it opened and migrated the store."""
        self._spawn()
        sock = self._sock
        assert sock is not None
        sock.settimeout(START_TIMEOUT)
        try:
            ready = read_frame(sock)
        except (OSError, EOFError) as exc:
            self._kill()
            raise StoreError(f"the metrics store writer did not start: {exc or 'it exited'}") from None
        if ready is not None:
            self._kill()
            raise StoreError(ready)
        sock.setblocking(False)
        self._ready = True

    def put(self, operation: Operation | PredictionRow, settled: Settled) -> None:
        """Run the operation in the next batch; ``settled(result, error)`` runs on this loop afterwards."""
        if self._loop is None or self._loop.is_closed():
            self._attach()
        if self._error is not None and not self._ready:
            settled(None, self._error)
            return
        if isinstance(operation, PredictionRow):
            self.put_row(
                (operation.uuid, operation.project, operation.model, operation.deployment,
                 operation.build, operation.replica, operation.ts_ms, operation.metrics),
                settled,
            )  # fmt: skip
            return
        try:
            self._ops.append(pickle.dumps(operation, pickle.HIGHEST_PROTOCOL))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            settled(None, TypeError(f"a metrics store operation must pickle: {exc}"))
            return
        self._op_waiters.append(settled)
        if not self._flush_scheduled and not self._sent:  # else it goes when the batch ahead is answered
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def put_row(self, row: Row, settled: Settled) -> None:
        """Insert one prediction (a PredictionRow's fields) in the next batch: the request path."""
        if self._loop is None or self._loop.is_closed():
            self._attach()
        if self._error is not None and not self._ready:
            settled(None, self._error)
            return
        self._rows.append(row)
        self._row_waiters.append(settled)
        if not self._flush_scheduled and not self._sent:  # else it goes when the batch ahead is answered
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    async def submit(self, operation: Operation | PredictionRow) -> Any:
        """Run operation(store) in the next batch and return its result (or raise its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.put(operation, partial(_settle, future))
        return await future

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then let the process commit and exit (the loop may be gone by now)."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        sock, proc = self._sock, self._proc
        if sock is None or proc is None:
            return
        with contextlib.suppress(OSError):
            if self._ready and (self._rows or self._ops):
                self._frame_pending()
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
                self._loop.remove_writer(sock.fileno())
            sock.setblocking(True)
            sock.settimeout(timeout)
            if self._outgoing:
                sock.sendall(self._outgoing)
            sock.shutdown(socket.SHUT_WR)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("metrics store writer did not finish within %.0fs: stopping it", timeout)
            self._kill()
        sock.close()
        self._sock = None

    # ------------------------------------------------------------ the loop's side

    def _attach(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._ready or self._sock is None or self._sent or not (self._rows or self._ops):
            return  # (re)starting, or a batch is being written: these go when it is answered
        self._frame_pending()
        self._send()

    def _frame_pending(self) -> None:
        self._outgoing += frames.encode((self._rows, self._ops))
        self._sent.append((self._row_waiters, self._op_waiters))
        self._rows, self._row_waiters, self._ops, self._op_waiters = [], [], [], []

    def _send(self) -> None:
        sock = self._sock
        if sock is None or not self._outgoing:
            return
        try:
            sent = sock.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return  # the process is gone: the reader sees the end and fails what is pending
        del self._outgoing[:sent]
        if self._outgoing:
            self._loop.add_writer(sock.fileno(), self._on_writable)  # type: ignore[union-attr]

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())  # type: ignore[union-attr]
        self._send()

    def _on_readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._incoming += data
        payloads, used = frames.split(self._incoming)
        del self._incoming[:used]
        for payload in payloads:
            self._answered(pickle.loads(payload))

    def _answered(self, message: Any) -> None:
        if not self._ready:  # a restarted process says whether it opened the store
            self._restarted(message)
            return
        rows_error, results = message
        row_waiters, op_waiters = self._sent.popleft()
        self.batches += 1
        self.operations += len(row_waiters) + len(op_waiters)
        self._flush()  # what queued up meanwhile is the next batch: the process starts on it at once
        for settled in row_waiters:
            _call(settled, None, rows_error)
        for settled, (result, error) in zip(op_waiters, results, strict=True):
            _call(settled, result, error)

    def _lost(self) -> None:
        """The process ended: fail what it had not answered, start a new one."""
        loop = self._loop
        assert loop is not None and self._sock is not None
        loop.remove_reader(self._sock.fileno())
        loop.remove_writer(self._sock.fileno())
        code = self._proc.wait() if self._proc is not None else None
        self._sock.close()
        self._sock, self._proc, self._ready = None, None, False
        self._outgoing.clear()
        self._incoming.clear()
        error = StoreError(f"the metrics store writer stopped (exit code {code}); writes it held are lost")
        if not self._stopping:
            log.error("%s: starting a new one", error)
        while self._sent:
            row_waiters, op_waiters = self._sent.popleft()
            for settled in row_waiters + op_waiters:
                _call(settled, None, error)
        if not self._stopping:
            delay = RESTART_SECONDS * (5 if self._error is not None else 1)
            self._restart = loop.call_later(delay, self._respawn)

    def _respawn(self) -> None:
        self._restart = None
        try:
            self._spawn()
        except OSError as exc:
            log.error("metrics store writer: cannot start a new one: %s", exc)
            self._restart = self._loop.call_later(RESTART_SECONDS * 5, self._respawn)  # type: ignore[union-attr]
            return
        self._sock.setblocking(False)  # type: ignore[union-attr]
        self._loop.add_reader(self._sock.fileno(), self._on_readable)  # type: ignore[union-attr]

    def _restarted(self, ready: str | None) -> None:
        if ready is not None:
            log.error("metrics store writer: %s", ready)
            self._error = StoreError(ready)
            for settled in self._row_waiters + self._op_waiters:
                _call(settled, None, self._error)
            self._rows, self._row_waiters, self._ops, self._op_waiters = [], [], [], []
            return  # the process exits; _lost schedules the next try
        log.info("metrics store writer: running again")
        self._error = None
        self._ready = True
        if self._rows or self._ops:
            self._flush()

    # ------------------------------------------------------------ the process

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the proxy's code
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "cmlplan.serving.store.writer_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
        self._sock = ours
        write_frame(ours, self._opener)  # the opener (a DSN inside) goes over the socket, never in argv

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _call(settled: Settled, result: Any, error: BaseException | None) -> None:
    try:
        settled(result, error)
    except Exception:  # one waiter's bug must not leave the others of the batch unanswered
        log.exception("metrics store: unexpected error handing back a write")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def opener_for(url: str) -> Opener:
    """The default opener: the store at url (the DSN travels inside it over the socket pair)."""
    return partial(open_store, url)
