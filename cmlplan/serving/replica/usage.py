"""What this replica uses: CPU seconds so far and memory now, read from the source its provider chose.

``GET /usage`` answers one sample; the proxy polls it off its request path and turns successive
samples into CPU cores used per minute (the CPU counter is cumulative, so any number of pollers,
at any interval, measure the same thing).

Sources:
- ``psutil`` (the local provider): the replica process and every process it started, CPU time
  including children already reaped; memory is their resident set; the limit is RLIMIT_DATA.
- ``cgroup`` (docker, kubernetes): the container's own cgroup, v2 or v1, computed as ``docker
  stats`` does: CPU is the cgroup's usage counter, memory is usage minus the inactive file cache
  (cAdvisor's working set); the limits are the cgroup's memory limit and CPU quota.
- ``none``: the endpoint answers 404, as a replica of an older cmlplan does.
"""

from __future__ import annotations

import json
import os
import resource
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

SOURCES = ("psutil", "cgroup", "none")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


class UsageUnavailable(Exception):
    """The source cannot be read (a missing file, psutil not installed); the message is one line."""


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float  # CPU time used since the replica (or its container) started
    memory_bytes: int
    memory_limit_bytes: int | None
    cpu_limit_cores: float | None


class UsageSource(Protocol):
    name: str

    def sample(self) -> Usage: ...


class ProcessTree:
    """This process and its descendants, through psutil."""

    name = "psutil"

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError:
            raise UsageUnavailable("psutil is not installed in this replica's environment") from None
        self._psutil = psutil
        self._process = psutil.Process()

    def sample(self) -> Usage:
        psutil = self._psutil
        cpu, memory = 0.0, 0
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # it ended between the listing and the read: its time moves to its parent
            cpu += times.user + times.system + times.children_user + times.children_system
            memory += rss
        soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = None if soft == resource.RLIM_INFINITY else int(soft)
        return Usage(cpu, memory, limit, None)


class Cgroup:
    """The cgroup this process runs in, as mounted inside its container (v2 unified or v1)."""

    name = "cgroup"

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.version = 2 if (root / "cgroup.controllers").is_file() else 1
        if self.version == 1 and self._v1("cpuacct", "cpuacct.usage") is None:
            raise UsageUnavailable(f"no cgroup v2 or v1 CPU accounting under {root}")

    def sample(self) -> Usage:
        return self._sample_v2() if self.version == 2 else self._sample_v1()

    def _sample_v2(self) -> Usage:
        cpu = _stat(self._read(self.root / "cpu.stat")).get("usage_usec")
        if cpu is None:
            raise UsageUnavailable(f"{self.root / 'cpu.stat'} has no usage_usec")
        current = int(self._read(self.root / "memory.current"))
        inactive = _stat(self._read(self.root / "memory.stat")).get("inactive_file", 0)
        return Usage(cpu / 1e6, _working_set(current, inactive), _limit_v2(self.root), _cpu_max(self.root))

    def _sample_v1(self) -> Usage:
        usage = self._v1("cpuacct", "cpuacct.usage")
        memory_dir = self._v1("memory", "memory.usage_in_bytes")
        if usage is None or memory_dir is None:
            raise UsageUnavailable(f"cgroup v1 accounting files are gone from {self.root}")
        current = int(self._read(memory_dir / "memory.usage_in_bytes"))
        inactive = _stat(self._read(memory_dir / "memory.stat")).get("total_inactive_file", 0)
        limit = _int_file(memory_dir / "memory.limit_in_bytes")
        cpu_dir = self._v1("cpu", "cpu.cfs_quota_us")
        quota = _int_file(cpu_dir / "cpu.cfs_quota_us") if cpu_dir else None
        period = _int_file(cpu_dir / "cpu.cfs_period_us") if cpu_dir else None
        cores = quota / period if quota and quota > 0 and period else None
        return Usage(
            int(self._read(usage / "cpuacct.usage")) / 1e9,
            _working_set(current, inactive),
            limit if limit is not None and limit < _UNLIMITED else None,
            cores,
        )

    def _v1(self, controller: str, probe: str) -> Path | None:
        """The folder of a v1 controller (``cpuacct``, or ``cpu,cpuacct`` where they are mounted together)."""
        for name in (controller, "cpu,cpuacct", "cpuacct,cpu"):
            if (self.root / name / probe).is_file():
                return self.root / name
        return None

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text()
        except OSError as exc:
            raise UsageUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None


def open_source(name: str) -> UsageSource | None:
    """The source called ``name``; None for ``none``. Raises UsageUnavailable."""
    if name == "psutil":
        return ProcessTree()
    if name == "cgroup":
        return Cgroup()
    return None


class UsageReporter:
    """Answers ``GET /usage``: one sample, with this process's instance id so pollers see restarts."""

    def __init__(self, source_name: str, replica_id: str) -> None:
        self.replica_id = replica_id
        self.instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.source_name = source_name
        self.problem: str | None = None
        self.source: UsageSource | None = None
        try:
            self.source = open_source(source_name)
        except UsageUnavailable as exc:
            self.problem = str(exc)

    def answer(self) -> tuple[int, bytes]:
        """(status, JSON body): 200 with a sample, 404 when sampling is off, 503 when it fails."""
        if self.source is None and self.problem is None:
            return 404, _error("usage.off", "this replica does not report its usage (--usage-source none)")
        try:
            if self.source is None:
                raise UsageUnavailable(self.problem or "no usage source")
            usage = self.source.sample()
        except UsageUnavailable as exc:
            return 503, _error("usage.unavailable", str(exc))
        except (OSError, ValueError) as exc:  # a file that is not what the kernel documents
            return 503, _error("usage.unavailable", f"{self.source.name}: {exc}")
        body = {"replica_id": self.replica_id, "instance": self.instance, "source": self.source.name, **asdict(usage)}
        return 200, json.dumps(body).encode()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"success": False, "errors": {code: message}}).encode()


def _stat(text: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.stat) as a dict."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _working_set(usage: int, inactive_file: int) -> int:
    """docker stats' memory figure: usage without the page cache the kernel can drop at once."""
    return usage - inactive_file if inactive_file < usage else usage


def _int_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _limit_v2(root: Path) -> int | None:
    try:
        text = (root / "memory.max").read_text().strip()
    except OSError:
        return None
    return None if text == "max" or not text.isdigit() else int(text)


def _cpu_max(root: Path) -> float | None:
    """cpu.max ``"<quota> <period>"`` as cores; None for ``max`` (no quota)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)
