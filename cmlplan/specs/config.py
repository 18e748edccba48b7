"""A whole configuration: the resources of one workspace, checked against each other."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..registry.availability import MLFLOW_HINT, mlflow_available
from .apikey import ApiKeySpec
from .document import Resource
from .errors import did_you_mean
from .model import ModelSpec
from .project import ProjectSpec
from .workspace import WorkspaceSpec


@dataclass(frozen=True)
class Config:
    """Everything the specs say, by address; built only by ``load_config``."""

    directory: str
    workspace: Resource
    resources: dict[str, Resource] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # absolute paths of the spec files, kept out of build sources

    @property
    def workspace_spec(self) -> WorkspaceSpec:
        return self.workspace.spec

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.kind == kind]


def check_config(
    resources: list[Resource], directory: str, files: tuple[str, ...] = ()
) -> tuple[Config | None, list[str]]:
    """Cross-document rules: one Workspace, unique addresses, references that resolve, limits."""
    problems: list[str] = []
    workspaces = [r for r in resources if r.kind == "Workspace"]
    if not workspaces:
        problems.append(f"{directory}: no Workspace document; add exactly one (kind: Workspace)")
    for extra in workspaces[1:]:
        problems.append(f"{extra.origin}: a second Workspace; the first is at {workspaces[0].origin}")
    by_address: dict[str, Resource] = {}
    for resource in resources:
        if resource.kind == "Workspace":
            continue
        previous = by_address.get(resource.address)
        if previous is not None:
            problems.append(f"{resource.where('metadata', 'name')}: duplicate {resource.address}; first defined at {previous.origin}")
            continue
        by_address[resource.address] = resource
    if not workspaces:
        return None, problems
    workspace: WorkspaceSpec = workspaces[0].spec
    users = {u.name for u in workspace.users}
    projects = {r.name for r in by_address.values() if r.kind == "Project"}
    registries = {r.name for r in by_address.values() if r.kind == "ModelRegistry"}
    proxies = [r for r in by_address.values() if r.kind == "Proxy"]
    for extra in proxies[1:]:
        problems.append(f"{extra.origin}: a second Proxy; one serving proxy per workspace ({proxies[0].origin})")
    if workspace.openlineage is not None and importlib.util.find_spec("openlineage") is None:
        problems.append(
            f"{workspaces[0].where('spec', 'openlineage')}: Workspace spec.openlineage needs openlineage-python,"
            " which is not installed: pip install 'cmlplan[openlineage]'"
        )
    if registries and not mlflow_available():
        first = next(r for r in by_address.values() if r.kind == "ModelRegistry")
        problems.append(f"{first.origin}: {first.address}: ModelRegistry {MLFLOW_HINT}")
    for resource in by_address.values():
        if resource.kind == "Project":
            spec: ProjectSpec = resource.spec
            for user in spec.collaborators:
                if user not in users:
                    problems.append(
                        f"{resource.where('spec', 'collaborators', user)}: {resource.address}: spec.collaborators.{user}: {user!r} is not a Workspace user"
                        f"{did_you_mean(user, users)}"
                    )
        elif resource.kind == "ApiKey":
            key: ApiKeySpec = resource.spec
            if key.user not in users:
                problems.append(
                    f"{resource.where('spec', 'user')}: {resource.address}: spec.user: {key.user!r} is not a Workspace user"
                    f"{did_you_mean(key.user, users)}"
                )
            cap = workspace.limits.api_key_max_expiry
            if key.expires_in is not None and key.expires_in > cap:
                problems.append(
                    f"{resource.where('spec', 'expires_in')}: {resource.address}: spec.expires_in is longer than the Workspace allows"
                    f" ({key.expires_in / 86400:g}d > {cap / 86400:g}d)"
                )
            if key.expires_at is not None and (key.expires_at - datetime.now(UTC)).total_seconds() > cap:
                problems.append(
                    f"{resource.where('spec', 'expires_at')}: {resource.address}: spec.expires_at is further away than the Workspace allows"
                    f" ({cap / 86400:g}d)"
                )
        elif resource.kind == "Model":
            model: ModelSpec = resource.spec
            project = resource.metadata.project
            if project not in projects:
                problems.append(
                    f"{resource.where('metadata', 'project')}: {resource.address}: metadata.project: {project!r} is not defined"
                    f"{did_you_mean(str(project), projects)}"
                )
            registered = model.source.registered
            if registered is not None and registered.registry not in registries:
                problems.append(
                    f"{resource.where('spec', 'source', 'registered', 'registry')}: {resource.address}: spec.source.registered.registry: {registered.registry!r} is not defined"
                    f"{did_you_mean(registered.registry, registries)}"
                )
            limit = workspace.limits.max_replicas
            if model.deployment.replicas > limit:
                problems.append(
                    f"{resource.where('spec', 'deployment', 'replicas')}: {resource.address}: spec.deployment.replicas: {model.deployment.replicas}"
                    f" is over the Workspace limit of {limit} (raise limits.max_replicas, up to 199)"
                )
    if problems:
        return None, problems
    return Config(directory, workspaces[0], by_address, files), problems
