"""load_config: every problem is one line naming file:line:column and the field path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmlplan.specs import SpecError, load_config

WORKSPACE = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: w}
spec:
  users: [{name: alice}]
"""
PROJECT = """\
apiVersion: cmlplan/v1
kind: Project
metadata: {name: p}
spec: {collaborators: {alice: owner}}
"""
MODEL = """\
apiVersion: cmlplan/v1
kind: Model
metadata: {name: m, project: p}
spec:
  source: {file: m.py, function: f}
  deployment:
    replicas: 2
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(folder: Path, *documents: str, name: str = "specs.yaml") -> list[str]:
    (folder / name).write_text("---\n".join(documents))
    with pytest.raises(SpecError) as caught:
        load_config(folder)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_valid_config_loads(folder: Path) -> None:
    (folder / "specs.yaml").write_text("---\n".join([WORKSPACE, PROJECT, MODEL]))
    config = load_config(folder)
    assert sorted(config.resources) == ["model.p/m", "project.p"]
    assert config.workspace.name == "w"
    assert str(config.resources["model.p/m"].origin) == "specs.yaml:12:1"


def test_typo_suggests_the_field(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT, MODEL.replace("replicas: 2", "repilcas: 2")) == [
        "specs.yaml:18:5: Model 'm': spec.deployment.repilcas: unknown field; did you mean 'replicas'?"
    ]


def test_unknown_field_without_a_close_match_lists_the_fields(folder: Path) -> None:
    [problem] = problems(folder, WORKSPACE, PROJECT, MODEL.replace("replicas: 2", "zzz: 2"))
    assert problem.startswith("specs.yaml:18:5: Model 'm': spec.deployment.zzz: unknown field (fields: ")
    assert "replicas" in problem


def test_unknown_top_level_field(folder: Path) -> None:
    assert problems(folder, WORKSPACE + "lifecylce: {}\n") == [
        "specs.yaml:6:1: unknown top-level field 'lifecylce'; did you mean 'lifecycle'?"
    ]


def test_unknown_kind_with_suggestion(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT.replace("kind: Project", "kind: Projcet")) == [
        "specs.yaml:8:1: kind 'Projcet' is unknown; did you mean 'Project'?"
        " (kinds: Workspace, Proxy, ModelRegistry, Project, ApiKey, Model, Moved)"
    ]


def test_wrong_api_version(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT.replace("cmlplan/v1", "cmlplan/v2")) == [
        "specs.yaml:7:1: apiVersion 'cmlplan/v2' is not supported; use 'cmlplan/v1'"
    ]


def test_duplicate_address(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT, PROJECT) == [
        "specs.yaml:14:12: duplicate project.p; first defined at specs.yaml:7:1"
    ]


def test_duplicate_across_files(folder: Path) -> None:
    (folder / "b.yaml").write_text(PROJECT)
    assert problems(folder, WORKSPACE, PROJECT, name="a.yaml") == [
        "b.yaml:3:12: duplicate project.p; first defined at a.yaml:7:1"
    ]


def test_missing_project_reference(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT, MODEL.replace("project: p}", "project: q}")) == [
        "specs.yaml:14:21: model.q/m: metadata.project: 'q' is not defined"
    ]


def test_model_without_project(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT, MODEL.replace(", project: p}", "}")) == [
        "specs.yaml:14:1: Model 'm': metadata.project is required for a Model"
    ]


def test_missing_user(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT.replace("alice: owner", "alcie: owner")) == [
        "specs.yaml:10:24: project.p: spec.collaborators.alcie: 'alcie' is not a Workspace user; did you mean 'alice'?"
    ]
    apikey = "apiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: k}\nspec: {user: bob}\n"
    assert problems(folder, WORKSPACE, apikey) == [
        "specs.yaml:10:8: apikey.k: spec.user: 'bob' is not a Workspace user"
    ]


def test_two_workspaces(folder: Path) -> None:
    assert problems(folder, WORKSPACE, WORKSPACE) == [
        "specs.yaml:7:1: a second Workspace; the first is at specs.yaml:1:1"
    ]


def test_no_workspace(folder: Path) -> None:
    assert problems(folder, PROJECT) == [
        f"{folder}: no Workspace document; add exactly one (kind: Workspace)"
    ]


def test_replicas_over_the_default_limit(folder: Path) -> None:
    assert problems(folder, WORKSPACE, PROJECT, MODEL.replace("replicas: 2", "replicas: 10")) == [
        "specs.yaml:18:5: model.p/m: spec.deployment.replicas: 10 is over the Workspace limit of 9"
        " (raise limits.max_replicas, up to 199)"
    ]


def test_raised_limit_allows_more_replicas_up_to_199(folder: Path) -> None:
    raised = WORKSPACE + "  limits: {max_replicas: 199}\n"
    (folder / "specs.yaml").write_text(
        "---\n".join([raised, PROJECT, MODEL.replace("replicas: 2", "replicas: 150")])
    )
    assert load_config(folder).resources["model.p/m"].spec.deployment.replicas == 150
    [problem] = problems(folder, WORKSPACE + "  limits: {max_replicas: 200}\n", PROJECT, MODEL)
    assert problem.startswith("specs.yaml:6:12: Workspace 'w': spec.limits.max_replicas: ")
    assert "199" in problem


def test_bad_duration_and_size(folder: Path) -> None:
    model = MODEL.replace("replicas: 2", "replicas: 2\n    memory: 5 parsecs")
    apikey = "apiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: k}\nspec: {user: alice, expires_in: forever}\n"
    assert problems(folder, WORKSPACE, PROJECT, model, apikey) == [
        "specs.yaml:19:5: Model 'm': spec.deployment.memory: '5 parsecs' is not a size; write it like 5MB, 512Mi or 2Gi",
        "specs.yaml:24:21: ApiKey 'k': spec.expires_in: 'forever' is not a duration; write it like 30s, 2m, 1h or 90d",
    ]


def test_invalid_yaml_syntax(folder: Path) -> None:
    [problem] = problems(folder, WORKSPACE + "  env: {a: [1, 2}\n")
    assert problem.startswith("specs.yaml:6:")
    assert "invalid YAML" in problem


def test_non_mapping_document(folder: Path) -> None:
    assert problems(folder, WORKSPACE, "- just\n- a list\n") == [
        "specs.yaml:7:1: a document must be a mapping with apiVersion, kind, metadata and spec"
    ]


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    found = problems(
        folder, WORKSPACE, PROJECT.replace("cmlplan/v1", "v0"), MODEL.replace("replicas: 2", "repilcas: 2")
    )
    assert len(found) == 2


def test_env_reference_is_accepted(folder: Path) -> None:
    model = MODEL.replace("replicas: 2", "replicas: 2\n    env: {TOKEN: '${env:MY_TOKEN}', PLAIN: x}")
    (folder / "specs.yaml").write_text("---\n".join([WORKSPACE, PROJECT, model]))
    env = load_config(folder).resources["model.p/m"].spec.deployment.env
    assert env == {"TOKEN": "${env:MY_TOKEN}", "PLAIN": "x"}


def test_bad_env_name(folder: Path) -> None:
    model = MODEL.replace("replicas: 2", "replicas: 2\n    env: {1BAD: x}")
    [problem] = problems(folder, WORKSPACE, PROJECT, model)
    assert problem.startswith(
        "specs.yaml:17:3: Model 'm': spec.deployment: env name '1BAD' is not a valid variable name"
    )


def test_empty_folder(folder: Path) -> None:
    with pytest.raises(SpecError, match="no \\*.yaml or \\*.yml spec files here"):
        load_config(folder)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=st.sampled_from(list("ab:-{}[]\n '\"&*!|>#%@`,?0123456789\t.")), max_size=120),
        st.builds(
            lambda body: WORKSPACE + body,
            st.text(alphabet=st.sampled_from(list("ab:-{}[]\n '\"&*!|>#0123456789.")), max_size=80),
        ),
    )
)
def test_arbitrary_text_is_a_spec_error_or_loads(text: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "specs.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(scratch)
        except SpecError as exc:
            assert exc.problems and all(p and "\n" not in p for p in exc.problems)



@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_brackets_nested_past_the_limit_are_refused_before_parsing(folder: Path, opener: str) -> None:
    """ruamel's scanner is cubic in flow depth: 2,000 brackets would take half a minute to parse."""
    found = problems(folder, WORKSPACE, "x: " + opener * 2_000 + "\n", name="deep.yaml")
    column = len("x: ") + 100 * len(opener) + 1  # the 101st opener
    assert found == [f"deep.yaml:7:{column}: invalid YAML: brackets nest deeper than 100 levels"]


def test_brackets_in_quotes_comments_and_plain_scalars_do_not_count(folder: Path) -> None:
    description = "".join(f"  # [[[[{{ note {i}\n" for i in range(150))
    project = PROJECT.replace("spec: {collaborators: {alice: owner}}", "spec:\n" + description
                              + "  collaborators: {alice: owner}\n  description: 'a[b " + "[" * 300 + "'")
    (folder / "specs.yaml").write_text("---\n".join([WORKSPACE, project]))
    assert "[" * 300 in load_config(folder).resources["project.p"].spec.description
