"""A real proxy whose SQLite metrics store fills up, then turns read-only, while it serves.

The store lives on a 1 MiB tmpfs (``mount`` needs root; the test skips cleanly otherwise). Each
prediction is still answered 200 with its value; the caller reads why its metrics were not
stored in ``x-cmlplan-metrics-error``; what was stored before stays (readable while the disk is
full; the metrics API answers 503 with the reason while the store cannot be opened); and once
the disk has room again and is writable, the next prediction is stored.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmlplan.serving.metrics import MetricsClient, MetricsError

pytestmark = pytest.mark.slow

KEY, VIEWER = "ak-faults-0001", "api-faults-viewer"
MODEL = """
import cdsw

@cdsw.model_metrics
def predict(args):
    cdsw.track_metrics({"tag": args["tag"], "padding": "x" * 30000})
    return args["tag"]
"""


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def call(proxy_url: str, tag: str) -> tuple[int, str, str | None]:
    """(status, the model's answer, x-cmlplan-metrics-error) as a client sees them."""
    body = json.dumps({"accessKey": KEY, "request": {"tag": tag}}).encode()
    request = urllib.request.Request(proxy_url + "/model", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status, json.loads(reply.read())["response"]["prediction"], reply.headers["x-cmlplan-metrics-error"]


def stored_tags(proxy_url: str) -> list[str]:
    return [e["metrics"]["tag"] for e in MetricsClient(proxy_url, VIEWER).read_metrics(model="model.faults/m")["metrics"]]


def test_a_full_then_read_only_store_answers_every_prediction_and_loses_nothing(serving, tmp_path):
    with small_tmpfs(tmp_path / "storefs") as storefs:
        source = tmp_path / "src"
        source.mkdir()
        (source / "predict.py").write_text(MODEL)
        replica = serving.replica("predict", "faults-r0", source=source)
        routes = serving.write_routes(
            tmp_path / "routes.json",
            {KEY: serving.model_entry("model.faults/m", [replica], project="faults")},
            api_keys={VIEWER: {"name": "viewer", "user": "bob"}},
            projects={"faults": {"bob": "viewer"}},
        )
        document = json.loads(routes.read_text())
        document["proxy"]["metrics_store"] = {"url": f"sqlite:{storefs / 'metrics.db'}"}
        routes.write_text(json.dumps(document))
        proxy = serving.proxy(routes)

        assert call(proxy.url, "kept") == (200, "kept", None)
        filler = storefs / "filler"
        with open(filler, "wb", buffering=0) as handle:
            for _ in range(1024):
                try:
                    handle.write(b"\0" * 4096)
                except OSError:
                    break
        full = [call(proxy.url, f"full-{i}") for i in range(3)]  # the WAL may have room for one
        status, answer, error = full[-1]
        assert (status, answer) == (200, "full-2") and error is not None and "full" in error, full
        assert "kept" in stored_tags(proxy.url)

        filler.unlink()
        proxy.signal(signal.SIGTERM)  # a disk can only turn read-only with no file open for writing
        proxy.popen.wait(timeout=60)
        subprocess.run(["mount", "-o", "remount,ro", str(storefs)], check=True, timeout=30)
        try:
            proxy = serving.proxy(routes)
            status, answer, error = call(proxy.url, "read-only")
            assert (status, answer) == (200, "read-only") and error is not None, error
            assert "cannot open the metrics store" in error and "is on a read-only filesystem" in error, error
            with pytest.raises(MetricsError, match="503: metrics.store_unavailable"):
                stored_tags(proxy.url)
            proxy.signal(signal.SIGTERM)
            proxy.popen.wait(timeout=60)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(storefs)], check=True, timeout=30)

        proxy = serving.proxy(routes)
        assert call(proxy.url, "after") == (200, "after", None)  # room again: stored as before
        tags = stored_tags(proxy.url)
        assert tags[0] == "kept" and tags[-1] == "after" and "read-only" not in tags
