"""Registered MLflow models on the docker provider, against a real mlflow server that cmlplan runs
as a container: register, deploy, call, upgrade by alias with zero failed requests, roll back by
version pin; a missing version or a registry that does not answer fails the plan in one line and
leaves the running deployment alone; the registry's data survives its container; lineage and
history carry the real run ids; destroy removes every container and keeps the data. A second
registry keeps its backend in PostgreSQL with the password in no label, command line, state or plan.

The tests share one workspace (a copy of examples/iris-mlflow) and run in file order. The mlflow
server image is shared by every workspace on the engine and kept, so later runs reuse it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerws import EXAMPLES, PYTHON, DockerWorkspace, docker, free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker]

MODEL = "model.iris/petal-width"
DEPLOYMENT = "deployment.iris/petal-width"


class RegistryDocker(DockerWorkspace):
    """The iris-mlflow example on docker, with its registry on a port of its own."""

    def __init__(self, directory: Path, label: str) -> None:
        super().__init__(directory, label)
        self.registry_port = free_port()
        self.uri = f"http://127.0.0.1:{self.registry_port}"
        self.replace_in_spec(f"  port: {self.port}\n  backend_store", f"  port: {self.registry_port}\n  backend_store")
        self.replace_in_spec("users: [{name: alice}]", "users: [{name: alice}]\n  openlineage: {file: lineage.jsonl}")
        self.runs: dict[int, str] = {}  # registered version -> MLflow run id, as fit.py printed them
        self.container = f"cmlplan-{self.name}-registry-main"

    def fit(self, *args: str) -> int:
        out = subprocess.run(
            [str(PYTHON), "fit.py", "--tracking-uri", self.uri, *args], cwd=self.dir,
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
        found = re.search(r"run ([0-9a-f]{32}): IrisPetalWidth version (\d+)", out)
        assert found, out
        self.runs[int(found.group(2))] = found.group(1)
        return int(found.group(2))

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def predict(self, request: Any = None) -> float:
        status, body = self.call(MODEL, request if request is not None else {"petal_length": 5.4}, api_key=self.key("apikey.alice-ci"))
        assert status == 200 and body["success"], body
        return float(body["response"][0])

    def replicas(self) -> list[str]:
        return [n for n in self.containers(all_states=False) if "-iris-petal-width-d" in n]


@pytest.fixture(scope="module")
def ws(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryDocker]:
    target = tmp_path_factory.mktemp("docker-registry") / "iris-mlflow"
    shutil.copytree(EXAMPLES / "iris-mlflow", target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "mlruns"))
    workspace = RegistryDocker(target, "mlflow")
    try:
        started = time.monotonic()
        workspace.cli("apply", "-auto-approve", "-target", "registry.main")
        print(f"\nregistry container up (image built or reused) in {time.monotonic() - started:.1f}s")
        assert workspace.fit() == 1
        yield workspace
    finally:
        workspace.teardown()


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name).stdout)[0]


# -- the managed registry ----------------------------------------------------------------------------


def test_the_registry_is_a_labelled_container_published_on_loopback(ws: RegistryDocker) -> None:
    attributes = ws.state_show("registry.main")["attributes"]
    assert attributes["uri"] == ws.uri
    assert attributes["network_uri"] == f"http://{ws.container}:5000"
    assert attributes["processes"][0]["name"] == ws.container
    container = inspect(ws.container)
    labels = container["Config"]["Labels"]
    assert labels["cmlplan.workspace"] == ws.name and labels["cmlplan.address"] == "registry.main"
    assert labels["cmlplan.role"] == "registry" and labels["cmlplan.image"] == attributes["image"]
    bindings = container["HostConfig"]["PortBindings"]["5000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(ws.registry_port)}]
    assert f"cmlplan-{ws.name}" in container["NetworkSettings"]["Networks"]
    assert (ws.dir / ".cmlplan" / "registry" / "main" / "mlflow.db").is_file()  # on the host, bind-mounted
    assert ws.cli("plan", "-detailed-exitcode", "-target", "registry.main", check=False).returncode == 0
    assert ws.json("output")["registries"] == [
        {"address": "registry.main", "mode": "managed", "uri": ws.uri, "network_uri": attributes["network_uri"]}
    ]
    assert ws.cli("output", "-raw", "registry.main").stdout.strip() == ws.uri


def test_on_docker_deploy_the_alias_and_call_it_in_every_documented_shape(ws: RegistryDocker) -> None:
    plan = ws.cli("plan").stdout
    assert "serves registered IrisPetalWidth version 1" in plan and ws.runs[1] in plan
    assert 'requirements.mlflow-skinny = "==' in plan
    ws.apply()
    one = ws.predict()
    assert 1.0 < one < 3.0
    api_key = ws.key("apikey.alice-ci")
    status, records = ws.call(MODEL, [{"petal_length": 1.4}, {"petal_length": 5.4}], api_key=api_key)
    assert status == 200 and len(records["response"]) == 2 and records["response"][1] == pytest.approx(one)
    status, split = ws.call(MODEL, {"columns": ["petal_length"], "data": [[5.4]]}, api_key=api_key)
    assert status == 200 and split["response"] == [pytest.approx(one)]
    status, bad = ws.call(MODEL, {"sepal_width": 3.0}, api_key=api_key)
    assert status == 500 and "model.exception" in bad["errors"]
    assert len(ws.replicas()) == 2


def test_the_image_serves_pyfunc_with_mlflow_skinny_and_reaches_the_registry_by_name(ws: RegistryDocker) -> None:
    replica = ws.replicas()[0]
    probe = (
        "import importlib.metadata as m, urllib.request as u\n"
        "print(m.version('mlflow-skinny'))\n"
        "try:\n    m.version('mlflow'); print('full mlflow')\nexcept m.PackageNotFoundError:\n    print('no full mlflow')\n"
        f"print(u.urlopen('http://{ws.container}:5000/health', timeout=10).status)\n"
    )
    out = docker("exec", replica, "python", "-c", probe).stdout.split()
    assert out[1:] == ["no", "full", "mlflow", "200"], out


def test_moving_the_alias_is_a_planned_replace_served_without_failed_requests(ws: RegistryDocker) -> None:
    before = ws.predict()
    assert ws.fit("--alpha", "25") == 2
    plan = ws.cli("plan").stdout
    assert "registered IrisPetalWidth version 1 -> 2 (alias champion moved)" in plan and ws.runs[2] in plan
    changes = {c["address"]: c["action"] for c in ws.json("plan")["resource_changes"]}
    assert changes[DEPLOYMENT] in ("replace", "create-then-delete", "create_then_delete")
    assert changes["build.iris/petal-width#2"] == "create"

    failures: list[object] = []
    answered = [0]
    done = threading.Event()
    api_key = ws.key("apikey.alice-ci")

    def keep_calling() -> None:
        while not done.is_set():
            status, body = ws.call(MODEL, {"petal_length": 5.4}, api_key=api_key)
            if status != 200:
                failures.append((status, body))
            answered[0] += 1

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        ws.apply()
    finally:
        done.set()
        caller.join()
    assert failures == [] and answered[0] > 10
    assert ws.predict() != pytest.approx(before)
    assert ws.state_show("build.iris/petal-width#2")["attributes"]["image"].endswith("-iris-petal-width:2")


def test_pinning_a_version_rolls_back_to_its_existing_image(ws: RegistryDocker) -> None:
    ws.replace_in_spec("alias: champion}", "version: 1}")
    plan = ws.cli("plan").stdout
    assert "version 2 -> 1 (pinned to version 1)" in plan
    assert "build.iris/petal-width#3" not in plan  # version 1's build (and image) is reused
    ws.apply()
    assert ws.state_show(DEPLOYMENT)["attributes"]["build"] == 1
    assert ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_on_docker_a_missing_version_fails_the_plan_in_one_line_and_touches_nothing(ws: RegistryDocker) -> None:
    serving, replicas = ws.predict(), ws.replicas()
    ws.replace_in_spec("version: 1}", "version: 9}")
    try:
        result = ws.cli("plan", check=False)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert re.fullmatch(
            rf"Error: cmlplan\.yaml:\d+:\d+: {MODEL}: registered model 'IrisPetalWidth' has no version 9 \(versions: 1, 2\)",
            line,
        ), line
        assert ws.cli("apply", "-auto-approve", check=False).returncode == 1
    finally:
        ws.replace_in_spec("version: 9}", "version: 1}")
    assert ws.predict() == pytest.approx(serving) and ws.replicas() == replicas


def test_on_docker_a_registry_that_does_not_answer_fails_the_plan_and_the_model_keeps_serving(ws: RegistryDocker) -> None:
    serving = ws.predict()
    docker("pause", ws.container)  # up, but not answering
    try:
        result = ws.cli("plan", check=False)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"registry main at {ws.uri} does not answer" in lines[0], result.stderr
        assert "cmlplan apply -target registry.main" in lines[0]
        assert ws.predict() == pytest.approx(serving)
    finally:
        docker("unpause", ws.container)
    assert ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_a_removed_registry_container_is_drift_and_its_data_survives(ws: RegistryDocker) -> None:
    docker("rm", "-f", ws.container)
    plan = ws.cli("plan", "-target", "registry.main").stdout
    assert "registry.main was deleted outside cmlplan" in plan and "+ registry.main" in plan
    ws.cli("apply", "-auto-approve", "-target", "registry.main")
    # same versions, same artifacts: the deployment's pinned version resolves to what it serves
    assert ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    versions = json.loads(
        subprocess.run(
            [str(PYTHON), "-c", "import json, mlflow, sys; c = mlflow.MlflowClient(sys.argv[1]);"
             " print(json.dumps(sorted(int(v.version) for v in c.search_model_versions(\"name='IrisPetalWidth'\"))))",
             ws.uri], capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    )
    assert versions == [1, 2]


def test_lineage_and_history_carry_the_real_runs(ws: RegistryDocker) -> None:
    graph = ws.json("lineage", MODEL)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes[f"run:{ws.runs[1]}"]["metrics"]) == {"mse", "r2"}
    assert {"from": f"run:{ws.runs[1]}", "to": "version:IrisPetalWidth/1"} in graph["edges"]
    assert ws.runs[1] in ws.cli("lineage").stdout
    rows = ws.json("history", MODEL)["history"]
    deployments = [r for r in rows if r["address"] == DEPLOYMENT]
    assert [(r["deployment_id"], r["build"], r["registered"]["version"]) for r in deployments] == [
        (1, 1, 1), (2, 2, 2), (3, 1, 1)
    ]
    assert all(r["stopped_at"] for r in deployments[:2]) and deployments[2]["stopped_at"] is None
    events = [json.loads(line) for line in (ws.dir / "lineage.jsonl").read_text().splitlines()]
    inputs = {i["name"] for e in events for i in e.get("inputs", [])}
    assert f"runs/{ws.runs[2]}" in inputs and "models/IrisPetalWidth/2" in inputs


def test_destroy_removes_every_container_and_keeps_the_registry_data(ws: RegistryDocker) -> None:
    ws.cli("destroy", "-auto-approve")
    assert ws.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert (ws.dir / ".cmlplan" / "registry" / "main" / "mlflow.db").stat().st_size > 0
    assert any((ws.dir / ".cmlplan" / "registry" / "main" / "artifacts").iterdir())


# -- PostgreSQL backend ----------------------------------------------------------------------------


PG_SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: pgreg}
spec:
  provider: local
---
apiVersion: cmlplan/v1
kind: ModelRegistry
metadata: {name: main}
spec:
  port: 5000
  backend_store: {type: postgresql, dsn: "${env:MLFLOW_TEST_DSN}"}
"""


PRIVATE_NETS = ("172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8")


@pytest.fixture
def bridge_postgres(docker_engine: str) -> Iterator[str]:
    """A private PostgreSQL listening on loopback and on the Docker bridge's gateway, where
    containers reach it as host.docker.internal; yields that DSN."""
    from pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup installs Debian's postgresql)")
    gateway = docker(  # what host-gateway means on this engine (docker0's address unless configured)
        "run", "--rm", "--add-host", "host.docker.internal:host-gateway", docker_engine,
        "getent", "ahostsv4", "host.docker.internal",
    ).stdout.split()[0]

    class BridgePg(PgServer):
        def restart(self) -> None:
            hba = self.data / "pg_hba.conf"  # the workspace network may get any private range
            if "172.16.0.0/12" not in hba.read_text():
                lines = "".join(f"host all all {net} scram-sha-256\n" for net in PRIVATE_NETS)
                hba.write_text(hba.read_text() + lines)
            options = f"-p {self.port} -c listen_addresses=127.0.0.1,{gateway} -k {self.root} -c fsync=off"
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    server = BridgePg(bindir)
    server.start()
    try:
        dsn = server.new_database()
        yield dsn.replace("@127.0.0.1:", "@host.docker.internal:")
    finally:
        server.close()


def test_a_postgresql_backend_keeps_the_password_out_of_labels_argv_state_and_plan(
    bridge_postgres: str, tmp_path: Path
) -> None:
    import psycopg

    (tmp_path / "cmlplan.yaml").write_text(PG_SPEC)
    workspace = DockerWorkspace(tmp_path, "pgreg")
    name = workspace.name
    password = bridge_postgres.split(":")[2].split("@")[0]
    env = {"MLFLOW_TEST_DSN": bridge_postgres}
    try:
        applied = workspace.cli("apply", "-auto-approve", env=env)
        host_dsn = bridge_postgres.replace("@host.docker.internal:", "@127.0.0.1:")
        with psycopg.connect(host_dsn) as connection:
            tables = {r[0] for r in connection.execute("select tablename from pg_tables where schemaname='public'")}
        assert {"registered_models", "model_versions", "experiments"} <= tables
        container = inspect(f"cmlplan-{name}-registry-main")
        visible = json.dumps(
            [container["Config"]["Labels"], container["Config"]["Cmd"], container["Args"], container["Path"]]
        )
        state = (tmp_path / ".cmlplan" / "state.json").read_text()
        plan = workspace.cli("plan", env=env)
        for text in (visible, state, applied.stdout, applied.stderr, plan.stdout):
            assert password not in text
        # documented: the container's environment holds it (docker inspect is root-equivalent)
        assert any(password in item for item in container["Config"]["Env"])
        assert workspace.cli("plan", "-detailed-exitcode", env=env, check=False).returncode == 0
    finally:
        with contextlib.suppress(Exception):
            workspace.cli("destroy", "-auto-approve", env=env, check=False)
        workspace.teardown()


# -- S3-compatible artifact store ----------------------------------------------------------------

MOTO = "moto[server]==5.2.5"
MOTO_IMAGE = "cmlplan-test/moto:5.2.5"
S3_ARTIFACTS = """  artifacts:
    type: s3
    bucket: s3://models
    endpoint_url: ENDPOINT
    access_key_id: ${env:TEST_S3_KEY}
    secret_access_key: ${env:TEST_S3_SECRET}
"""


def _moto_image(base_image: str, context: Path) -> str:
    """An S3-compatible server (moto) image, its wheels resolved on the host like every image here."""
    if docker("image", "inspect", MOTO_IMAGE, check=False).returncode == 0:
        return MOTO_IMAGE
    wheels = context / "wheels"
    subprocess.run(
        [str(PYTHON), "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(wheels), MOTO],
        check=True, capture_output=True, timeout=600,
    )
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY wheels /tmp/wheels\n"
        "RUN python3 -m venv /opt/moto && /opt/moto/bin/pip install -q --no-index --find-links /tmp/wheels"
        f" '{MOTO}' && rm -rf /tmp/wheels\nUSER 65534:65534\n"
        'CMD ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "5000"]\n'
    )
    docker("build", "-q", "-t", MOTO_IMAGE, str(context), timeout=900)
    return MOTO_IMAGE


@pytest.fixture
def s3_endpoint(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running S3-compatible server with a bucket ``models``: (URL for containers, URL for this host)."""
    image = _moto_image(docker_engine, tmp_path_factory.mktemp("moto"))
    gateway = docker(
        "run", "--rm", "--add-host", "host.docker.internal:host-gateway", docker_engine,
        "getent", "ahostsv4", "host.docker.internal",
    ).stdout.split()[0]
    port, name = free_port(), f"cmlplan-test-moto-{time.time_ns() % 10**8}"
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", "-p", f"{gateway}:{port}:5000", image)
    host_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{host_url}/models", method="PUT"), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield f"http://host.docker.internal:{port}", host_url
    finally:
        docker("rm", "-f", name, check=False)


def test_an_s3_artifact_store_holds_the_model_the_plan_reads_through_the_server(
    s3_endpoint: tuple[str, str], tmp_path: Path
) -> None:
    for_containers, for_host = s3_endpoint
    target = tmp_path / "iris-mlflow"
    shutil.copytree(EXAMPLES / "iris-mlflow", target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "mlruns"))
    workspace = RegistryDocker(target, "s3reg")
    secret = "s3-secret-value-for-the-test"
    env = {"TEST_S3_KEY": "s3-access-key-for-the-test", "TEST_S3_SECRET": secret}
    workspace.replace_in_spec("  artifacts: {type: folder}", S3_ARTIFACTS.replace("ENDPOINT", for_containers).rstrip("\n"))
    try:
        applied = workspace.cli("apply", "-auto-approve", "-target", "registry.main", env=env)
        workspace.fit()  # uploads through the server, which writes to S3 with the ${env:} keys
        with urllib.request.urlopen(f"{for_host}/models?list-type=2", timeout=10) as reply:
            listing = reply.read().decode()
        assert "/artifacts/MLmodel</Key>" in listing and "/artifacts/model.skops</Key>" in listing, listing[:2000]
        assert not (target / ".cmlplan" / "registry" / "main" / "artifacts").exists()  # nothing on disk
        # the plan reads MLmodel and requirements.txt back through the server (the server offers
        # presigned S3 URLs naming host.docker.internal, which this machine cannot resolve)
        plan = workspace.cli("plan", env=env, timeout=300)
        assert f"serves registered IrisPetalWidth version 1, run {workspace.runs[1]}" in plan.stdout
        container = inspect(workspace.container)
        visible = json.dumps([container["Config"]["Labels"], container["Config"]["Cmd"]])
        state = (target / ".cmlplan" / "state.json").read_text()
        for text in (visible, state, applied.stdout, applied.stderr, plan.stdout):
            assert secret not in text
    finally:
        with contextlib.suppress(Exception):
            workspace.cli("destroy", "-auto-approve", env=env, check=False)
        workspace.teardown()
