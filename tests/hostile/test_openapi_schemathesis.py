"""docs/openapi/proxy.yaml is valid OpenAPI, and a real proxy answers as it says (schemathesis).

One proxy serves two models on one echo replica: one without authentication, one with it (plus an
API key of a collaborator), and writes a SQLite metrics store. Metrics API calls the generator
made valid are sent again with the owner's key about a deployed model, so the 200 answers (reads,
aggregates, technical cells) are checked against the spec too. Every generated case is sent as generated (random access keys: 404,
bad bodies: 400, ...) and, for positive cases, again with each real access key and the valid API
key, so the success path and the auth errors are checked against the spec too. Any 5xx fails
(``not_a_server_error``: the echo model cannot raise on JSON input), as does any status, content
type, header or body the spec does not declare.

Checks left out: ``positive_data_acceptance`` (a schema-valid call with a random access key is
rightly a 404) and ``max_response_time``. The stateful checks have no resources to act on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi import checks as openapi_checks

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "proxy.yaml"
FREE_KEY = "mak_schemathesis-free"
AUTH_KEY = "mak_schemathesis-auth"
API_KEY = "cak_schemathesis-alice"
ECHO = "def echo(args):\n    return args\n"

load_all_checks()
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.missing_required_header,
    openapi_checks.unsupported_method,
]


def test_the_spec_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_path(SPEC)
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert operations == {
        ("POST", "/model"), ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/monitoring"),
        ("POST", "/metrics/read"), ("POST", "/metrics/delayed"), ("POST", "/metrics/aggregate"),
        ("POST", "/metrics/technical"),
    }  # fmt: skip
    import yaml  # schemathesis depends on PyYAML

    document = yaml.safe_load(SPEC.read_text())
    assert document["openapi"].startswith("3.1")
    codes = set(document["paths"]["/model"]["post"]["responses"])
    assert codes == {"200", "400", "401", "403", "404", "408", "413", "429", "431", "500", "502", "503", "504"}


@pytest.fixture
def proxy_url(serving: Any) -> str:
    source = serving.tmp / "echo"
    source.mkdir()
    (source / "predict.py").write_text(ECHO)
    replica = serving.replica("echo", source=source)
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {
            FREE_KEY: serving.model_entry("model.numbers/free", [replica], project="numbers"),
            AUTH_KEY: serving.model_entry("model.numbers/auth", [replica], authentication=True, project="numbers"),
        },
        api_keys={API_KEY: {"name": "alice-ci", "user": "alice", "expires_at": None}},
        projects={"numbers": {"alice": "owner"}},
        max_request_bytes=1 << 20,
        busy_timeout=10.0,
    )
    document = json.loads(routes.read_text())  # a metrics store, so the metrics API can answer 200
    document["proxy"].update(metrics_store={"url": "sqlite:metrics.db"}, technical_flush_seconds=0.5)
    routes.write_text(json.dumps(document))
    return serving.proxy(routes).url


# loaded at import; the base URL is the fixture's (schemathesis' lazy from_fixture breaks on pytest 9)
schema = schemathesis.openapi.from_path(SPEC)


@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_proxy_answers_as_the_spec_says(case: Any, proxy_url: str) -> None:
    case.call_and_validate(base_url=proxy_url, checks=CHECKS, timeout=15)
    if getattr(case.meta.generation.mode, "value", "positive") != "positive" or not isinstance(case.body, dict):
        return
    if case.operation.path.startswith("/metrics/"):
        _again_as_a_collaborator(case, proxy_url)
        return
    if case.operation.path != "/model" or "request" not in case.body:
        return
    original_key = case.body.get("accessKey")
    original_headers = dict(case.headers or {})
    for key, authorization in (
        (FREE_KEY, None),
        (AUTH_KEY, None),  # 401 auth.missing
        (AUTH_KEY, "Bearer cak_not-a-key"),  # 401 auth.invalid
        (AUTH_KEY, f"Bearer {API_KEY}"),  # 200
    ):
        case.body["accessKey"] = key
        headers = {k: v for k, v in original_headers.items() if k.lower() != "authorization"}
        if authorization:
            headers["Authorization"] = authorization
        case.headers = headers
        response = case.call(base_url=proxy_url, timeout=15)
        case.validate_response(response, checks=CHECKS[:5])
        expected = 401 if key == AUTH_KEY and authorization != f"Bearer {API_KEY}" else 200
        assert response.status_code == expected, (key, authorization, response.text)
    case.body["accessKey"] = original_key
    case.headers = original_headers


def _again_as_a_collaborator(case: Any, proxy_url: str) -> None:
    """A schema-valid metrics call sent again with the owner's key about a deployed model: it is
    answered 200, or 400/404 for what the schema cannot say (end before start, no model named, an
    unknown prediction); never a 5xx, and always as the spec says."""
    body = dict(case.body)
    if case.operation.path == "/metrics/delayed":
        expected = {200, 404}  # a random UUID names no stored prediction
    else:
        body.pop("deployment", None)
        body.pop("model_deployment", None)
        body["model"] = "model.numbers/free"
        body.pop("replica", None)
        expected = {200, 400}  # 400: a window whose end is before its start
    original_body, original_headers = case.body, dict(case.headers or {})
    case.body = body
    case.headers = {**{k: v for k, v in original_headers.items() if k.lower() != "authorization"},
                    "Authorization": f"Bearer {API_KEY}"}  # fmt: skip
    try:
        response = case.call(base_url=proxy_url, timeout=15)
        case.validate_response(response, checks=CHECKS[:5])
        assert response.status_code in expected, (case.operation.path, body, response.text)
        if response.status_code == 400:
            assert "is before start_timestamp_ms" in response.text, response.text
    finally:
        case.body, case.headers = original_body, original_headers
