"""OpenLineage events for each apply, when the Workspace asks (``openlineage: {file | url}``).

One OpenLineage run per apply: START before the first action, then COMPLETE or FAIL. Inputs are
the registered model versions, their MLflow runs and training data sets of the models the apply
changed; outputs are the builds and deployments it changed. A failure to emit is reported as
progress and never fails the apply (the world already changed; lineage must not hide that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..specs.workspace import OpenLineageSettings
from ..state.document import StateDocument
from .addresses import model_of

PRODUCER = "https://github.com/cmlplan/cmlplan"


class LineageEmitter:
    """Sends the events of one apply; ``None`` settings make it do nothing."""

    def __init__(self, settings: OpenLineageSettings | None, spec_dir: Path, workspace: str) -> None:
        self.settings = settings
        self.spec_dir = spec_dir
        self.workspace = workspace
        self._client: Any = None
        self.run_id = ""

    def start(self, addresses: list[str]) -> str | None:
        """Emit START; returns a problem in words when the event could not be sent."""
        if self.settings is None:
            return None
        try:
            from openlineage.client.uuid import generate_new_uuid

            self.run_id = str(generate_new_uuid())
            return self._emit("START", [], self._outputs(addresses))
        except ImportError:
            return "openlineage-python is not installed: pip install 'cmlplan[openlineage]'"

    def finish(self, ok: bool, addresses: list[str], state: StateDocument) -> str | None:
        if self.settings is None or not self.run_id:
            return None
        return self._emit("COMPLETE" if ok else "FAIL", self._inputs(addresses, state), self._outputs(addresses))

    # -- events -----------------------------------------------------------------------------------

    def _emit(self, state: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> str | None:
        from datetime import UTC, datetime

        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

        event = RunEvent(
            eventType=getattr(RunState, state),
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=self.run_id),
            job=Job(namespace=self.settings.namespace if self.settings else "cmlplan", name=f"{self.workspace}.apply"),
            producer=PRODUCER,
            inputs=[InputDataset(namespace=ns, name=name) for ns, name in inputs],
            outputs=[OutputDataset(namespace=ns, name=name) for ns, name in outputs],
        )
        try:
            self._transport_client().emit(event)
        except Exception as exc:  # a file or endpoint problem must not fail the apply
            return f"could not emit the OpenLineage {state} event: {type(exc).__name__}: {exc}"
        return None

    def _transport_client(self) -> Any:
        if self._client is None:
            from openlineage.client import OpenLineageClient

            settings = self.settings
            assert settings is not None
            if settings.file:
                from openlineage.client.transport.file import FileConfig, FileTransport

                path = Path(settings.file)
                path = path if path.is_absolute() else self.spec_dir / path
                path.parent.mkdir(parents=True, exist_ok=True)
                transport: Any = FileTransport(FileConfig(log_file_path=str(path), append=True))
            else:
                from openlineage.client.transport.http import HttpConfig, HttpTransport

                transport = HttpTransport(HttpConfig(url=str(settings.url)))
            self._client = OpenLineageClient(transport=transport)
        return self._client

    def _outputs(self, addresses: list[str]) -> list[tuple[str, str]]:
        namespace = f"cmlplan://{self.workspace}"
        return [(namespace, a) for a in sorted(addresses) if a.startswith(("build.", "deployment.", "registry."))]

    def _inputs(self, addresses: list[str], state: StateDocument) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        builds = {a for a in addresses if a.startswith("build.")}
        for address in addresses:
            deployed = state.resources.get(address) if address.startswith("deployment.") else None
            if deployed is not None and isinstance(deployed.attributes.get("build"), int):
                builds.add(f"build.{address.split('.', 1)[1]}#{deployed.attributes['build']}")
        for address in sorted(builds):
            resource = state.resources.get(address)
            registered = (resource.attributes.get("registered") if resource is not None else None) or {}
            if isinstance(registered, dict) and registered:
                uri = str(registered.get("uri"))
                found.append((uri, f"models/{registered.get('name')}/{registered.get('version')}"))
                if registered.get("run_id"):
                    found.append((uri, f"runs/{registered['run_id']}"))
                for dataset in registered.get("datasets") or []:
                    found.append((uri, f"datasets/{dataset.get('name')}@{dataset.get('digest')}"))
            model = state.resources.get(model_of(address))
            for item in ((model.attributes.get("lineage") if model is not None else None) or {}).get("training_data", []):
                found.append(("file", str(item.get("path"))))
        return list(dict.fromkeys(found))
