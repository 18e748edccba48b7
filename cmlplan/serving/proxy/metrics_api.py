"""The metrics API jobs call (the SDK's client): delayed metrics, aggregates, reads.

``POST /metrics/delayed``, ``/metrics/aggregate`` and ``/metrics/read``, each with
``Authorization: Bearer <API key>``. The key's user must hold a role in the model's project:
any role reads, ``editor`` or ``owner`` writes. Every refusal is one ``{code: message}``.
"""

from __future__ import annotations

import time
from typing import Any

from ..metrics.tracking import MetricsError, check_metrics
from ..store import StoreError, UnknownPrediction, WrongProject
from .codec import InvalidJSON, decode, encode
from .errors import ProxyError
from .recorder import Recorder
from .routes import ModelRoute, RoutingTable

WRITERS = frozenset({"editor", "owner"})
PATHS = (b"/metrics/delayed", b"/metrics/aggregate", b"/metrics/read", b"/metrics/technical")


async def answer(
    table: RoutingTable, recorder: Recorder, path: bytes, authorization: bytes | None, body: bytes
):
    """(status, JSON body) for one metrics API call; never raises ProxyError past here."""
    try:
        user = _user(table, authorization)
        query = _object(body)
        if path == b"/metrics/read":
            return 200, await _read(table, recorder, user, query)
        if path == b"/metrics/technical":
            return 200, encode({"cells": await _technical(table, recorder, user, query)})
        if path == b"/metrics/delayed":
            await _delayed(table, recorder, user, query)
        else:
            await _aggregate(table, recorder, user, query)
        return 200, encode({"success": True})
    except ProxyError as error:
        return error.status, error.body()
    except MetricsError as exc:
        return 400, ProxyError(400, "metrics.invalid", str(exc)).body()
    except StoreError as exc:
        return 503, ProxyError(503, "metrics.store_unavailable", str(exc)).body()


def _user(table: RoutingTable, authorization: bytes | None) -> str:
    if authorization is None or authorization[:7].lower() != b"bearer ":
        raise ProxyError(
            401, "auth.missing", "the metrics API needs an 'Authorization: Bearer <API key>' header"
        )
    key = table.find_api_key(authorization[7:].strip().decode("latin-1"))
    if key is None:
        raise ProxyError(401, "auth.invalid", "the API key is not valid")
    if key.expires_at is not None and key.expires_at <= time.time():
        raise ProxyError(403, "auth.expired", f"the API key {key.name!r} has expired")
    return key.user


def _object(body: bytes) -> dict[str, Any]:
    try:
        value, _ = decode(body)
    except InvalidJSON as exc:
        raise ProxyError(400, "request.invalid", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProxyError(400, "request.invalid", "the body must be a JSON object")
    return value


def _route(table: RoutingTable, query: dict[str, Any], model_field: str, deployment_field: str) -> ModelRoute:
    model, deployment = query.get(model_field), query.get(deployment_field)
    for name, value in ((model_field, model), (deployment_field, deployment)):
        if value is not None and not isinstance(value, str):
            raise ProxyError(400, "request.invalid", f"{name} must be a string")
    if model is None and deployment is None:
        raise ProxyError(
            400, "request.invalid", f"name the model ({model_field}) or its deployment ({deployment_field})"
        )
    route = table.find_route(model, deployment)
    if route is None:
        raise ProxyError(404, "model.not_found", f"no deployed model matches {deployment or model!r}")
    return route


def _require_role(table: RoutingTable, project: str, user: str, *, write: bool) -> None:
    role = table.role(project, user)
    if role is None:
        raise ProxyError(403, "auth.forbidden", f"user {user!r} is not a collaborator of project {project!r}")
    if write and role not in WRITERS:
        raise ProxyError(
            403,
            "auth.forbidden",
            f"user {user!r} is a {role} of project {project!r}; writing metrics needs editor or owner",
        )


def _window(query: dict[str, Any], required: bool) -> tuple[int | None, int | None]:
    values = []
    for name in ("start_timestamp_ms", "end_timestamp_ms"):
        value = query.get(name)
        if value is None and not required:
            values.append(None)
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProxyError(
                400, "request.invalid", f"{name} must be milliseconds since the epoch, not {value!r}"
            )
        values.append(value)
    start, end = values
    if start is not None and end is not None and end < start:
        raise ProxyError(
            400, "request.invalid", f"end_timestamp_ms {end} is before start_timestamp_ms {start}"
        )
    return start, end


async def _read(
    table: RoutingTable, recorder: Recorder, user: str, query: dict[str, Any]
) -> list[dict[str, Any]]:
    route = _route(table, query, "model", "deployment")
    _require_role(table, route.project, user, write=False)
    start, end = _window(query, required=False)
    build = query.get("build")
    if build is not None and not isinstance(build, str):
        raise ProxyError(400, "request.invalid", "build must be a string")
    model = query.get("model")
    deployment = query.get("deployment")
    return await recorder.read(model=model, deployment=deployment, build=build, start_ms=start, end_ms=end)


async def _delayed(table: RoutingTable, recorder: Recorder, user: str, query: dict[str, Any]) -> None:
    prediction_uuid = query.get("prediction_uuid")
    if not isinstance(prediction_uuid, str) or not prediction_uuid:
        raise ProxyError(
            400, "request.invalid", "prediction_uuid must be the UUID a prediction answered with"
        )
    metrics = check_metrics(query.get("metrics"))
    writable = frozenset(p for p, members in table.projects.items() if members.get(user) in WRITERS)
    try:
        await recorder.write(lambda store: store.add_delayed(prediction_uuid, metrics, writable))
    except UnknownPrediction:
        raise ProxyError(
            404, "prediction.not_found", f"no prediction {prediction_uuid} is stored (did it track metrics?)"
        ) from None
    except WrongProject as exc:
        raise ProxyError(
            403,
            "auth.forbidden",
            f"prediction {prediction_uuid} belongs to project {exc.args[0]!r}, where user {user!r} may not write",
        ) from None


async def _aggregate(table: RoutingTable, recorder: Recorder, user: str, query: dict[str, Any]) -> None:
    route = _route(table, query, "model", "model_deployment")
    _require_role(table, route.project, user, write=True)
    start, end = _window(query, required=True)
    metrics = check_metrics(query.get("metrics"))
    assert start is not None and end is not None
    key = (route.project, route.address, route.deployment, route.build)
    aggregate_id = recorder.new_id()
    await recorder.write(lambda store: store.add_aggregate(aggregate_id, key, start, end, metrics))


async def _technical(table: RoutingTable, recorder: Recorder, user: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Technical cells of one model (per replica, every proxy summed) in [start, end)."""
    route = _route(table, query, "model", "deployment")
    _require_role(table, route.project, user, write=False)
    start, end = _window(query, required=True)
    replica = query.get("replica")
    if replica is not None and not isinstance(replica, str):
        raise ProxyError(400, "request.invalid", "replica must be a string")
    assert start is not None and end is not None
    address = route.address
    return await recorder.read_with(
        lambda store: [
            bucket.summary(resolution)
            for resolution, bucket in store.read_technical(address, start, end, replica)
        ]
    )
