"""The SDK outside a replica: jobs read and write metrics through the proxy's metrics API.

The proxy is the only writer of the store, so a job never opens the store itself. It needs the
proxy's URL and an API key, from arguments or ``CMLPLAN_METRICS_URL`` / ``CMLPLAN_API_KEY``;
the key's project role decides what it may do (viewers read, editors and owners write).
"""

from __future__ import annotations

import gc
import json
import os
import urllib.error
import urllib.request
from typing import Any

from .tracking import MetricsError, check_metrics, current

try:
    import orjson
except ImportError:  # the SDK runs in any job's environment; orjson is only faster
    orjson = None  # type: ignore[assignment]

URL_ENV = "CMLPLAN_METRICS_URL"
KEY_ENV = "CMLPLAN_API_KEY"
TIMEOUT_SECONDS = 30.0


class MetricsClient:
    """One proxy and API key; the module-level functions use one built from the environment."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = TIMEOUT_SECONDS):
        url = url or os.environ.get(URL_ENV)
        api_key = api_key or os.environ.get(KEY_ENV)
        if not url:
            raise MetricsError(f"no metrics API URL: pass url= or set {URL_ENV} (the serving proxy's URL)")
        if not api_key:
            raise MetricsError(f"no API key: pass api_key= or set {KEY_ENV}")
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def track_delayed_metrics(self, metrics: dict[str, Any], prediction_uuid: str) -> None:
        check_metrics(metrics)
        if not isinstance(prediction_uuid, str) or not prediction_uuid:
            raise MetricsError("prediction_uuid must be the UUID string a prediction answered with")
        self._call("/metrics/delayed", {"prediction_uuid": prediction_uuid, "metrics": metrics})

    def track_aggregate_metrics(
        self,
        metrics: dict[str, Any],
        start_timestamp_ms: int,
        end_timestamp_ms: int,
        model_deployment: str | None = None,
        *,
        model: str | None = None,
    ) -> None:
        check_metrics(metrics)
        _check_window(start_timestamp_ms, end_timestamp_ms)
        if model is None and model_deployment is None:
            raise MetricsError("name the model (model=) or its deployment (model_deployment=)")
        self._call(
            "/metrics/aggregate",
            {
                "metrics": metrics,
                "start_timestamp_ms": start_timestamp_ms,
                "end_timestamp_ms": end_timestamp_ms,
                "model_deployment": model_deployment,
                "model": model,
            },
        )

    def read_metrics(
        self,
        model: str | None = None,
        deployment: str | None = None,
        build: str | None = None,
        start_timestamp_ms: int | None = None,
        end_timestamp_ms: int | None = None,
        *,
        model_crn: str | None = None,
        model_deployment_crn: str | None = None,
        model_build_crn: str | None = None,
    ) -> dict[str, Any]:
        """``{"metrics": [...]}`` with one entry per prediction or aggregate in the window."""
        model = model or model_crn
        deployment = deployment or model_deployment_crn
        build = build or model_build_crn
        if model is None and deployment is None:
            raise MetricsError("name the model (model=) or its deployment (deployment=)")
        if start_timestamp_ms is not None and end_timestamp_ms is not None:
            _check_window(start_timestamp_ms, end_timestamp_ms)
        query = {
            "model": model,
            "deployment": deployment,
            "build": build,
            "start_timestamp_ms": start_timestamp_ms,
            "end_timestamp_ms": end_timestamp_ms,
        }
        return self._call("/metrics/read", query)

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body, allow_nan=False).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="POST",
            headers={"content-type": "application/json", "authorization": f"Bearer {self._api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise MetricsError(f"metrics API {path}: HTTP {exc.code}: {_message(exc.read())}") from None
        except OSError as exc:
            raise MetricsError(f"cannot reach the metrics API at {self.url}: {exc}") from None
        try:
            return _decode(raw)
        except ValueError:
            raise MetricsError(f"metrics API {path} answered something that is not JSON") from None


def _decode(raw: bytes) -> Any:
    """Parse an answer; a read of an hour of a busy model is ~40,000 entries, ~10 MB.

    orjson when the job's environment has it (about twice as fast), and the cyclic garbage
    collector paused meanwhile: the parser makes no cycles, and each of the collections 80,000 new
    dicts would set off scans everything built so far.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        if orjson is not None:
            return orjson.loads(raw)
        return json.loads(raw)
    finally:
        if enabled:
            gc.enable()


def _message(raw: bytes) -> str:
    try:
        errors = json.loads(raw)["errors"]
        return "; ".join(f"{code}: {message}" for code, message in errors.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


def _check_window(start_ms: Any, end_ms: Any) -> None:
    for name, value in (("start_timestamp_ms", start_ms), ("end_timestamp_ms", end_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MetricsError(f"{name} must be milliseconds since the epoch (an integer), not {value!r}")
    if end_ms < start_ms:
        raise MetricsError(f"end_timestamp_ms {end_ms} is before start_timestamp_ms {start_ms}")


def _client(url: str | None, api_key: str | None) -> MetricsClient:
    return MetricsClient(url, api_key)


def track_delayed_metrics(
    metrics: dict[str, Any], prediction_uuid: str, *, url: str | None = None, api_key: str | None = None
) -> None:
    """Attach metrics known later (ground truth) to a stored prediction; an unknown UUID is an error."""
    _client(url, api_key).track_delayed_metrics(metrics, prediction_uuid)


def track_aggregate_metrics(
    metrics: dict[str, Any],
    start_timestamp_ms: int,
    end_timestamp_ms: int,
    model_deployment: str | None = None,
    *,
    model: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> None:
    """Store metrics computed over a window of predictions (ROC AUC, drift)."""
    if current() is not None:
        raise MetricsError("track_aggregate_metrics is for jobs; inside a model use track_metric(s)")
    _client(url, api_key).track_aggregate_metrics(
        metrics, start_timestamp_ms, end_timestamp_ms, model_deployment, model=model
    )


def read_metrics(
    model: str | None = None,
    deployment: str | None = None,
    build: str | None = None,
    start_timestamp_ms: int | None = None,
    end_timestamp_ms: int | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    **crns: str | None,
) -> dict[str, Any]:
    """Read tracked metrics; CML's ``model_crn=``/``model_deployment_crn=``/``model_build_crn=`` work too."""
    unknown = set(crns) - {"model_crn", "model_deployment_crn", "model_build_crn"}
    if unknown:
        raise MetricsError(f"read_metrics got unexpected arguments: {', '.join(sorted(unknown))}")
    return _client(url, api_key).read_metrics(
        model, deployment, build, start_timestamp_ms, end_timestamp_ms, **crns
    )
