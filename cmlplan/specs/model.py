"""Model: what to serve (a file + function, or a registered model version) and how to deploy it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .common import ENV_REFERENCE, Name, StrictModel
from .units import Size


class RegisteredSource(StrictModel):
    registry: Name = Field(description="a ModelRegistry in this configuration")
    name: str = Field(min_length=1, description="registered model name")
    version: int | None = Field(None, ge=1, description="registered model version (pin it to roll back)")
    alias: str | None = Field(
        None, min_length=1, description="follow an alias (e.g. champion); the plan shows the version it points at"
    )

    @model_validator(mode="after")
    def _version_or_alias(self) -> RegisteredSource:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give version or alias (one of them)")
        return self


class Source(StrictModel):
    path: str = Field(".", description="source root, relative to the spec file's folder")
    file: str | None = Field(None, description="the Python file, relative to the source root (e.g. predict.py)")
    function: str | None = Field(
        None, description="the function called with the request", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )
    registered: RegisteredSource | None = Field(None, description="serve a registered model version instead")

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if self.registered is not None:
            if self.file or self.function:
                raise ValueError("give file + function, or registered, not both")
        elif not (self.file and self.function):
            raise ValueError("give both file and function (or registered)")
        return self


class Runtime(StrictModel):
    python: str = Field("3.11", pattern=r"^3\.\d+$", description="Python version, e.g. 3.11")
    requirements: str | None = Field(
        None, description="requirements file, relative to the source root; pin versions for reproducible builds"
    )


class Build(StrictModel):
    script: str | None = Field(
        None, description="script run in the build's environment after dependencies (CML's cdsw-build.sh)"
    )


class Example(StrictModel):
    input: Any = Field(description="a request the model must answer before a rollout goes live")
    output: Any = Field(None, description="the expected response; when given, a rollout checks it")


class Autoscale(StrictModel):
    """A HorizontalPodAutoscaler per model (kubernetes provider; CML has no autoscaling)."""

    min: int = Field(1, ge=1, description="fewest replicas")
    max: int = Field(ge=1, description="most replicas")
    target_in_flight: float | None = Field(
        None, gt=0, description="scale to keep this many requests in flight per replica (a Pods metric)"
    )
    cpu: int | None = Field(None, ge=1, le=100, description="scale to keep this CPU utilization (percent of requests)")

    @model_validator(mode="after")
    def _one_target(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        if (self.target_in_flight is None) == (self.cpu is None):
            raise ValueError("give one target: target_in_flight or cpu")
        return self


class Deployment(StrictModel):
    replicas: int = Field(1, ge=1, description="replicas, each serving one request at a time")
    cpu: float = Field(1.0, gt=0, le=64, description="CPU cores per replica")
    memory: Size = Field(2 * 1024**3, gt=0, description="memory per replica (e.g. 2Gi)")
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables; ${env:NAME} reads the caller's environment"
    )
    gpus: int = Field(0, ge=0, le=16, description="NVIDIA GPUs per replica (docker, kubernetes)")
    autoscale: Autoscale | None = Field(
        None, description="scale replicas between min and max (kubernetes); pair with ignore_changes: [deployment.replicas]"
    )
    build: int | None = Field(None, ge=1, description="pin a build number (rollback); default: the latest")
    stopped: bool = Field(False, description="stop every replica; calls answer 503")

    @model_validator(mode="after")
    def _env_names(self) -> Deployment:
        for key in self.env:
            if not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "a").isalnum():
                raise ValueError(f"env name {key!r} is not a valid variable name")
        return self


class TrainingData(StrictModel):
    path: str = Field(min_length=1, description="the data set (a path or URI)")
    hash: str | None = Field(
        None, description="its digest (e.g. sha256:...); omitted: sha256 of the file when the path is a local file"
    )


class Lineage(StrictModel):
    training_data: tuple[TrainingData, ...] = Field(
        (), description="data the model was trained on, for `cmlplan lineage` (MLflow dataset inputs are added)"
    )


class ModelSpec(StrictModel):
    description: str = Field("", description="what the model does")
    source: Source = Field(description="what to serve")
    runtime: Runtime = Field(default_factory=Runtime, description="Python version and dependencies")
    build: Build = Field(default_factory=Build, description="build options")
    authentication: bool = Field(True, description="require an API key (Authorization: Bearer) besides the access key")
    examples: tuple[Example, ...] = Field((), description="example requests checked on every rollout")
    deployment: Deployment = Field(default_factory=Deployment, description="how the model is served")
    lineage: Lineage = Field(default_factory=Lineage, description="where the model came from")


def env_reference(value: str) -> str | None:
    """The variable name when ``value`` is an ${env:NAME} reference, else None."""
    match = ENV_REFERENCE.match(value)
    return match.group(1) if match else None
