"""The local provider's log files as `cmlplan logs` reads them (real files, no supervisord needed)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from cmlplan.providers.base import LogRequest
from cmlplan.providers.local.logs import read_logs

DEPLOYMENT = "deployment.numbers/add"


def _layout(root: Path) -> None:
    logs = root / "logs"
    logs.mkdir(parents=True)
    (logs / "r.numbers.add.d1.aaaa.0.log").write_text("old replica 0\n")
    (logs / "r.numbers.add.d1.bbbb.0.log").write_text("new replica 0\n")
    (logs / "r.numbers.add.d1.bbbb.1.log").write_text("new replica 1\npartial")
    (logs / "r.numbers.adder.d2.cccc.0.log").write_text("another model\n")
    (logs / "cmlplan-proxy-0.log").write_text("proxy up\n")
    build = root / "builds" / "numbers" / "add" / "2"
    build.mkdir(parents=True)
    (build / "build.log").write_text("installing\n")
    old = time.time() - 3600
    os.utime(logs / "r.numbers.add.d1.aaaa.0.log", (old, old))


def _lines(root: Path, **options: object) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        request = LogRequest(address=DEPLOYMENT, attributes={"build": 2}, **options)  # type: ignore[arg-type]
        return [(line.source, line.text) async for line in read_logs(root, request)]

    return asyncio.run(go())


def test_a_deployments_logs_hold_its_build_and_every_replica_ever_started(tmp_path: Path) -> None:
    _layout(tmp_path)
    lines = _lines(tmp_path)
    texts = [text for _, text in lines]
    assert texts[0] == "old replica 0"  # oldest first; a replaced replica's log is kept
    assert set(texts) == {"old replica 0", "new replica 0", "new replica 1", "installing"}  # not "partial"
    assert ("build 2", "installing") in lines
    assert ("replica 1 (r.numbers.add.d1.bbbb.1)", "new replica 1") in lines


def test_replica_and_since_select_files(tmp_path: Path) -> None:
    _layout(tmp_path)
    assert {t for _, t in _lines(tmp_path, replica=0)} == {"old replica 0", "new replica 0"}
    assert {t for _, t in _lines(tmp_path, since=time.time() - 600)} == {"new replica 0", "new replica 1", "installing"}


def test_follow_prints_what_is_appended_and_new_files(tmp_path: Path) -> None:
    _layout(tmp_path)
    logs = tmp_path / "logs"

    async def go() -> list[str]:
        seen: list[str] = []
        request = LogRequest(address="proxy.default", attributes={}, follow=True)

        async def consume() -> None:
            async for line in read_logs(tmp_path, request):
                seen.append(line.text)
                if len(seen) == 3:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        with (logs / "cmlplan-proxy-0.log").open("a") as handle:
            handle.write("a request\n")
        (logs / "cmlplan-proxy-1.log").write_text("second proxy\n")
        await asyncio.wait_for(task, 10)
        return seen

    assert asyncio.run(go()) == ["proxy up", "a request", "second proxy"]
