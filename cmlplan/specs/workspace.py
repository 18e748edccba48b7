"""Workspace: which provider runs everything, where state lives, and workspace-wide defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..serving.defaults import METRICS_FLUSH_SECONDS as DEFAULT_FLUSH_SECONDS
from ..serving.defaults import METRICS_RETENTION_DAYS as DEFAULT_RETENTION_DAYS
from .common import ENV_REFERENCE, Name, StrictModel
from .units import Duration

MAX_REPLICAS_CEILING = 199


class User(StrictModel):
    name: Name
    email: str | None = Field(None, description="contact address, informational")


class StateSettings(StrictModel):
    backend: Literal["file", "postgres"] = Field(
        "file", description="where state is kept: file (default) or postgres (shared by a team and CI)"
    )
    path: str = Field(".cmlplan/state.json", description="state file path, relative to the spec folder (file)")
    dsn: str | None = Field(
        None, description="PostgreSQL connection string, only as ${env:NAME} so no password sits in a spec (postgres)"
    )
    workspace: Name | None = Field(
        None, description="name of this state in the database (postgres; default: the Workspace's name)"
    )

    @model_validator(mode="after")
    def _check_backend(self) -> StateSettings:
        if self.backend == "postgres":
            if self.dsn is None:
                raise ValueError("backend postgres needs dsn: ${env:NAME} (e.g. ${env:CMLPLAN_STATE_DSN})")
            if not ENV_REFERENCE.match(self.dsn):
                raise ValueError("dsn must be an ${env:NAME} reference: a connection string holds a password")
        elif self.dsn is not None or self.workspace is not None:
            raise ValueError("dsn and workspace are settings of backend postgres")
        return self


class Limits(StrictModel):
    max_replicas: int = Field(
        9, ge=1, le=MAX_REPLICAS_CEILING, description="most replicas a model may ask for (CML: 9, up to 199)"
    )
    api_key_max_expiry: Duration = Field(
        365 * 86400, gt=0, description="longest expiry an ApiKey may ask for (default one year)"
    )
    api_key_default_expiry: Duration = Field(
        365 * 86400, gt=0,
        description="expiry of an ApiKey that sets none (default one year), capped by api_key_max_expiry",
    )

    @property
    def api_key_lifetime(self) -> float:
        """What a key without an expiry lives: the default, never past the maximum (as in CML)."""
        return float(min(self.api_key_default_expiry, self.api_key_max_expiry))


class DockerSettings(StrictModel):
    base_image: str = Field("python:3.11-slim", description="image builds start from")
    publish_host: str = Field("127.0.0.1", description="host address the proxy's port is published on")


class KubernetesSettings(StrictModel):
    namespace: str = Field(
        "default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63,
        description="namespace every object of the workspace goes to",
    )
    context: str | None = Field(None, description="kubeconfig context; default: the current context")
    kubeconfig: str | None = Field(
        None, description="kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account"
    )
    image_registry: str | None = Field(
        None, description="registry (host[:port][/path]) builds and the proxy image are pushed to and pulled from"
    )
    image_pull_secret: str | None = Field(None, description="a Secret in the namespace the kubelet pulls images with")
    rollout_timeout: Duration = Field(600, gt=0, description="how long apply waits for a rollout before it fails")
    force_conflicts: bool = Field(
        False, description="take over fields another field manager set (server-side apply force); off: such a conflict fails the apply"
    )


class OpenLineageSettings(StrictModel):
    file: str | None = Field(None, description="append one OpenLineage event per line to this file (relative to the spec folder)")
    url: str | None = Field(None, pattern=r"^https?://", description="send events to this OpenLineage HTTP endpoint")
    namespace: str = Field("cmlplan", min_length=1, description="the OpenLineage job namespace")

    @model_validator(mode="after")
    def _one_target(self) -> OpenLineageSettings:
        if (self.file is None) == (self.url is None):
            raise ValueError("give file or url (one of them)")
        return self


class MetricsSettings(StrictModel):
    dsn: str | None = Field(
        None,
        description="PostgreSQL connection string of the metrics store the proxy writes, only as ${env:NAME} "
        "(it holds a password); without it, a SQLite file beside the routing table (local, docker)",
    )
    retention_days: int = Field(
        DEFAULT_RETENTION_DAYS, ge=1, le=3650,
        description="technical metrics are kept per minute this long, then rolled up into hours",
    )
    flush_interval: Duration = Field(
        DEFAULT_FLUSH_SECONDS, gt=0, le=3600,
        description="how often each proxy writes its request counts and samples its replicas' CPU and memory",
    )

    @model_validator(mode="after")
    def _dsn_reference(self) -> MetricsSettings:
        if self.dsn is not None and not ENV_REFERENCE.match(self.dsn):
            raise ValueError("dsn must be an ${env:NAME} reference: a connection string holds a password")
        return self


class WorkspaceSpec(StrictModel):
    provider: Literal["local", "docker", "kubernetes"] = Field(
        "local", description="what runs builds, replicas and the proxy"
    )
    state: StateSettings = Field(default_factory=StateSettings, description="state backend")
    users: tuple[User, ...] = Field((), description="people who may own API keys and join projects")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment for every model; a model's own deployment.env wins; ${env:NAME} reads the caller's environment",
    )
    limits: Limits = Field(default_factory=Limits, description="caps on what specs may ask for")
    docker: DockerSettings = Field(default_factory=DockerSettings, description="docker provider settings")
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings, description="kubernetes provider settings"
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="the model metrics store the proxy writes, and how long it keeps technical metrics"
    )
    openlineage: OpenLineageSettings | None = Field(
        None, description="emit an OpenLineage event for every apply (needs openlineage-python)"
    )

    @model_validator(mode="after")
    def _unique_users(self) -> WorkspaceSpec:
        seen: set[str] = set()
        for user in self.users:
            if user.name in seen:
                raise ValueError(f"user {user.name!r} is listed twice")
            seen.add(user.name)
        return self
