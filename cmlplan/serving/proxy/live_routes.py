"""The current routing table and its SIGHUP reload.

Requests read ``live.table`` once and use that snapshot to the end, so a reload (one attribute
assignment) never mixes two tables inside one request.
"""

import logging
from pathlib import Path

from .routes import RoutesError, RoutingTable, load_table

log = logging.getLogger("cmlplan.proxy")


class LiveRoutes:
    def __init__(self, path: Path) -> None:
        """Load the first table; a RoutesError here means the proxy cannot start."""
        self.path = path
        self._stamp = self._file_stamp()
        self.table: RoutingTable = load_table(path)

    def reload(self) -> bool:
        """Re-read the file and swap the table; on error log one line and keep the old one."""
        self._stamp = self._file_stamp()
        try:
            table = load_table(self.path, self.table)
        except RoutesError as exc:
            log.error("routes reload failed, keeping generation %d: %s", self.table.generation, exc)
            return False
        self.table = table
        log.info("routes reloaded: generation %d, %d model keys", table.generation, len(table.models))
        return True

    def reload_if_changed(self) -> None:
        """Catch a SIGHUP that arrived while the proxy was starting and had no handler yet."""
        if self._file_stamp() != self._stamp:
            self.reload()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def busy_by_model(self) -> list[tuple[str, int]]:
        return [(pool.address, pool.busy_count()) for pool in self.table.pools()]
