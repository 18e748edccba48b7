"""`cmlplan metrics`: a model's technical metrics, minute by minute, from the serving proxy."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import click

from ..engine.addresses import parse_address
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from ..specs.units import parse_duration
from .call_cmd import _api_key
from .inspect_cmd import endpoints
from .options import chdir_option, json_option

COLUMNS = ("time", "replica", "requests", "req/s", "failed", "p50 ms", "p95 ms", "p99 ms", "mean ms", "req B", "resp B",
           "cpu", "mem MiB")  # fmt: skip
USAGE = ("cpu_cores", "cpu_limit_cores", "memory_bytes", "memory_max_bytes", "memory_limit_bytes")


@click.command("metrics")
@click.argument("address")
@click.option("-since", "--since", "since", default="1h", show_default=True, help="how far back (30m, 1h, 2d)")
@click.option("-replica", "--replica", "replica", default=None, help="one replica's figures (default: all summed)")
@click.option("-per-replica", "--per-replica", "per_replica", is_flag=True, help="a row per replica and minute")
@click.option("-api-key", "--api-key", "api_key", metavar="ADDR", help="apikey.<name> to read with (default: one that may)")
@chdir_option
@json_option
def metrics_command(
    address: str, since: str, replica: str | None, per_replica: bool, api_key: str | None, chdir: str, as_json: bool
) -> int:
    """Print a model's requests, failures, response times, sizes and replica CPU and memory per minute
    (hours past the retention).

    \b
    Examples:
      cmlplan metrics model.churn/risk
      cmlplan metrics model.churn/risk -since 24h -json
    """
    try:
        seconds = parse_duration(since)
    except (ValueError, TypeError) as exc:
        raise CmlplanError(f"-since: {exc}") from None
    workspace = Workspace.open(chdir)
    target = str(parse_address(address))
    model = next((m for m in endpoints(workspace) if m["address"] == target), None)
    if model is None:
        raise CmlplanError(f"{address}: not deployed in this workspace (see cmlplan output)")
    end = int(time.time() * 1000)
    query = {"model": target, "start_timestamp_ms": end - int(seconds * 1000), "end_timestamp_ms": end, "replica": replica}
    cells = _fetch(model["url"].rsplit("/", 1)[0], _api_key(workspace, target, api_key), query)
    if not per_replica:
        cells = _summed(cells)
    if as_json:
        click.echo(json.dumps({"model": target, "since_ms": query["start_timestamp_ms"], "cells": cells}, indent=2))
        return 0
    if not cells:
        click.echo(f"{target}: no requests in the last {since}")
        return 0
    rows = [COLUMNS, *(_row(c) for c in cells)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for r in rows:
        click.echo("  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    total = sum(c["requests"] for c in cells)
    failed = sum(c["failures"] for c in cells)
    click.echo(f"total: {total} requests, {failed} failed")
    return 0


def _fetch(base: str, key: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        base + "/metrics/technical",
        data=json.dumps(query).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["cells"]
    except urllib.error.HTTPError as exc:
        try:
            errors = json.loads(exc.read())["errors"]
            reason = "; ".join(f"{k}: {v}" for k, v in errors.items())
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {exc.code}"
        raise CmlplanError(f"{query['model']}: the proxy refused: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CmlplanError(f"cannot reach the proxy at {base} ({getattr(exc, 'reason', exc)})") from None


def _summed(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One cell per time: counts and bytes summed, response times weighted by requests."""
    by_time: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for cell in cells:
        by_time.setdefault((cell["start_ms"], cell["resolution_ms"]), []).append(cell)
    summed = []
    for (start, resolution), group in sorted(by_time.items()):
        requests = sum(c["requests"] for c in group)
        cell = {"model": group[0]["model"], "project": group[0]["project"], "replica": "all" if len(group) > 1 else group[0]["replica"],
                "start_ms": start, "resolution_ms": resolution, "requests": requests,
                "failures": sum(c["failures"] for c in group), "requests_per_second": requests / (resolution / 1000),
                "request_bytes": sum(c["request_bytes"] for c in group), "response_bytes": sum(c["response_bytes"] for c in group)}  # fmt: skip
        for key in ("mean_ms", "p50_ms", "p95_ms", "p99_ms"):  # p50..p99 of a sum: the requests-weighted mean
            values = [(c[key], c["requests"]) for c in group if c[key] is not None]
            cell[key] = round(sum(v * n for v, n in values) / sum(n for _, n in values), 3) if values else None
        for key in USAGE:  # CPU cores and memory of the model: every replica's added up
            values = [c[key] for c in group if c.get(key) is not None]
            cell[key] = round(sum(values), 4) if values else None
        summed.append(cell)
    return summed


def _row(cell: dict[str, Any]) -> tuple[str, ...]:
    when = datetime.fromtimestamp(cell["start_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    if cell["resolution_ms"] > 60_000:
        when += " (1h)"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (when, cell["replica"], str(cell["requests"]), f"{cell['requests_per_second']:.2f}", str(cell["failures"]),
            ms(cell["p50_ms"]), ms(cell["p95_ms"]), ms(cell["p99_ms"]), ms(cell["mean_ms"]),
            str(cell["request_bytes"]), str(cell["response_bytes"]),
            "-" if cell.get("cpu_cores") is None else f"{cell['cpu_cores']:.2f}",
            "-" if cell.get("memory_bytes") is None else f"{cell['memory_bytes'] / 1048576:.1f}")  # fmt: skip
