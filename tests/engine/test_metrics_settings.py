"""The Workspace's metrics settings: checked in the spec, carried by the proxy's attributes as a
reference and a fingerprint (never the DSN), a new password re-plans the proxy, and the routes file
gets the DSN's variable name only."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmlplan.plan import Action
from cmlplan.plan.jsonformat import plan_to_json
from cmlplan.plan.render_text import render_text
from cmlplan.providers.base import ProviderError
from cmlplan.providers.deployments import metrics_routes, needs_proxy_restart, proxy_environment
from cmlplan.serving.defaults import METRICS_DSN_ENV
from cmlplan.specs import SpecError, load_config

DSN = "postgresql://metrics:s3cret-metrics-pw@127.0.0.1:5432/metrics"


def set_metrics(directory: Path, metrics: str) -> None:
    path = directory / "cmlplan.yaml"
    text = path.read_text()
    old = "  users: [{name: alice}]\n"
    assert old in text
    path.write_text(text.replace(old, old + f"  metrics: {metrics}\n", 1))


def problems(directory: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_config(directory)
    return caught.value.problems


def test_the_settings_load_with_their_units(add_numbers: Path) -> None:
    set_metrics(add_numbers, "{dsn: '${env:METRICS_DSN}', retention_days: 30, flush_interval: 2s}")
    metrics = load_config(add_numbers).workspace_spec.metrics
    assert (metrics.dsn, metrics.retention_days, metrics.flush_interval) == ("${env:METRICS_DSN}", 30, 2.0)
    assert load_config(add_numbers.parent / "add-numbers").workspace_spec.metrics.retention_days == 30


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (f"{{dsn: '{DSN}'}}", "spec.metrics: dsn must be an ${env:NAME} reference: a connection string holds a password"),
        ("{retention_days: 0}", "spec.metrics.retention_days: Input should be greater than or equal to 1"),
        ("{flush_interval: soon}", "spec.metrics.flush_interval: 'soon' is not a duration"),
        ("{retention: 14d}", "spec.metrics.retention: unknown field; did you mean 'retention_days'?"),
    ],
)
def test_bad_settings_are_one_line_naming_the_field(add_numbers: Path, metrics: str, expected: str) -> None:
    set_metrics(add_numbers, metrics)
    [problem] = problems(add_numbers)
    assert "Workspace 'add-numbers-demo': " + expected in problem, problem
    assert "s3cret" not in problem


def test_the_proxy_carries_a_reference_and_a_fingerprint_never_the_dsn(engine, fake) -> None:  # type: ignore[no-untyped-def]
    set_metrics(engine.directory, "{dsn: '${env:METRICS_DSN}', retention_days: 30}")
    engine.environ["METRICS_DSN"] = DSN
    run, report = engine.apply()
    assert report.ok
    proxy = fake.world["proxy.default"]
    assert proxy["metrics_store"]["dsn_ref"] == "${env:METRICS_DSN}"
    assert len(proxy["metrics_store"]["dsn_fingerprint"]) >= 32 and proxy["metrics_retention_days"] == 30
    assert "technical_flush_seconds" not in proxy  # at its default: older states plan no change
    cmlplan = engine.directory / ".cmlplan"
    for path in cmlplan.rglob("*"):
        if path.is_file():
            assert b"s3cret-metrics-pw" not in path.read_bytes(), path
    assert "s3cret" not in plan_to_json(run.plan) + render_text(run.plan)
    assert '"dsn_ref": "${env:METRICS_DSN}"' in plan_to_json(run.plan)

    assert engine.plan().plan.change_for("proxy.default").action == Action.NOOP
    engine.environ["METRICS_DSN"] = DSN.replace("s3cret", "n3w")  # a new password: the proxy restarts
    again = engine.plan().plan
    change = again.change_for("proxy.default")
    assert change.action == Action.UPDATE
    fingerprint = [side["metrics_store"]["dsn_fingerprint"] for side in (change.before, change.after)]
    assert fingerprint[0] != fingerprint[1]
    shown = render_text(again)
    assert "~ metrics_store.dsn_fingerprint = (sensitive value) -> (sensitive value)" in shown
    assert "n3w" not in plan_to_json(again) + render_text(again)


def test_an_unset_variable_is_one_line_naming_the_workspace(engine, fake) -> None:  # type: ignore[no-untyped-def]
    set_metrics(engine.directory, "{dsn: '${env:NOT_SET_METRICS_DSN}'}")
    with pytest.raises(Exception) as caught:
        engine.plan()
    message = str(caught.value)
    assert "metrics.dsn: environment variable NOT_SET_METRICS_DSN is not set" in message
    assert "\n" not in message and "workspace.add-numbers-demo: metrics.dsn" in message


def test_the_routes_get_the_variable_name_and_the_proxy_its_value() -> None:
    planned = {"metrics_store": {"dsn_ref": "${env:X}", "dsn_fingerprint": "ab"}, "metrics_retention_days": 30}
    assert metrics_routes(planned) == {"metrics_store": {"dsn_env": METRICS_DSN_ENV}, "metrics_retention_days": 30}
    assert metrics_routes({}) == {"metrics_store": {"url": "sqlite:metrics.db"}}
    assert metrics_routes({}, sqlite=False) == {}  # Kubernetes: no file to write beside a Secret
    assert proxy_environment("proxy.default", planned, {"metrics.dsn": DSN}) == {METRICS_DSN_ENV: DSN}
    assert proxy_environment("proxy.default", {}, {}) == {}
    with pytest.raises(ProviderError, match=r"proxy.default: the metrics store's DSN \(\$\{env:X\}\) was not resolved"):
        proxy_environment("proxy.default", planned, {})
    assert needs_proxy_restart({"port": 1}, {"port": 1, "technical_flush_seconds": 2.0})
    assert not needs_proxy_restart({"port": 1}, {"port": 2})  # a new port is a replacement, not this
    assert not needs_proxy_restart(None, planned)
