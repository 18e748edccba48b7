"""A replica's own usage: cgroup v2 and v1 files read as ``docker stats`` reads them, psutil over the
process tree (children included), and the /usage answers for a source that is off or unreadable."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmlplan.serving.replica.usage import Cgroup, ProcessTree, Usage, UsageReporter, UsageUnavailable

MIB = 1 << 20


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_is_read_as_docker_stats_reads_it(tmp_path):
    root = write(tmp_path, {
        "cgroup.controllers": "cpu memory pids\n",
        "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
        "memory.current": f"{300 * MIB}\n",
        "memory.stat": f"anon {150 * MIB}\nfile {150 * MIB}\nactive_file {50 * MIB}\ninactive_file {100 * MIB}\n",
        "memory.max": f"{512 * MIB}\n",
        "cpu.max": "150000 100000\n",
    })  # fmt: skip
    assert Cgroup(root).sample() == Usage(2.5, 200 * MIB, 512 * MIB, 1.5)
    write(root, {"memory.max": "max\n", "cpu.max": "max 100000\n"})
    assert Cgroup(root).sample() == Usage(2.5, 200 * MIB, None, None)


def test_cgroup_v1_with_cpu_and_cpuacct_mounted_together(tmp_path):
    root = write(tmp_path, {
        "cpu,cpuacct/cpuacct.usage": "1500000000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "memory/memory.usage_in_bytes": f"{64 * MIB}\n",
        "memory/memory.stat": f"cache {20 * MIB}\ninactive_file 1\ntotal_inactive_file {16 * MIB}\n",
        "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
    })  # fmt: skip
    assert Cgroup(root).sample() == Usage(1.5, 48 * MIB, None, 0.5)
    write(root, {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "memory/memory.limit_in_bytes": f"{256 * MIB}\n"})
    assert Cgroup(root).sample() == Usage(1.5, 48 * MIB, 256 * MIB, None)


def test_no_cgroup_accounting_is_a_one_line_503(tmp_path):
    with pytest.raises(UsageUnavailable, match="no cgroup v2 or v1 CPU accounting under"):
        Cgroup(tmp_path)
    root = write(tmp_path / "v2", {"cgroup.controllers": "", "cpu.stat": "usage_usec 1\n"})
    reporter = UsageReporter("none", "r0")
    reporter.source, reporter.problem = Cgroup(root), None
    status, body = reporter.answer()
    assert status == 503
    (message,) = json.loads(body)["errors"].values()
    assert message.startswith("cannot read ") and "memory.current" in message and "\n" not in message


def test_sampling_off_answers_404():
    status, body = UsageReporter("none", "r0").answer()
    assert status == 404 and "usage.off" in json.loads(body)["errors"]


def test_psutil_counts_the_children_a_model_starts():
    tree = ProcessTree()
    before = tree.sample()
    code = (
        "import time, sys\n"
        "held = b'\\x01' * (80 << 20)\n"
        "end = time.process_time() + 0.6\n"
        "while time.process_time() < end: pass\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        during = tree.sample()
        assert during.memory_bytes - before.memory_bytes > 70 * MIB
        assert during.cpu_seconds - before.cpu_seconds >= 0.6
    finally:
        child.kill()
        child.wait()
    time.sleep(0.05)
    after = tree.sample()  # reaped: its time moved to our children_user/system, nothing lost
    assert after.cpu_seconds >= during.cpu_seconds
    assert after.memory_bytes < during.memory_bytes


def test_a_usage_answer_names_the_replica_and_its_instance():
    status, body = UsageReporter("psutil", "r7").answer()
    answer = json.loads(body)
    assert status == 200 and answer["replica_id"] == "r7" and answer["source"] == "psutil"
    assert answer["cpu_seconds"] > 0 and answer["memory_bytes"] > 10 * MIB
    assert answer["instance"] != UsageReporter("psutil", "r7").instance  # a restart is a new instance
