"""ModelRegistry: an MLflow tracking/registry server cmlplan runs, or an external one by URI."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import ENV_REFERENCE, StrictModel


class BackendStore(StrictModel):
    type: Literal["sqlite", "postgresql"] = Field("sqlite", description="database behind the registry")
    path: str | None = Field(None, description="SQLite file (sqlite)")
    dsn: str | None = Field(
        None,
        description="connection string, as ${env:NAME} so the password stays out of specs and state (postgresql);"
        " with docker, host.docker.internal names this machine",
    )

    @model_validator(mode="after")
    def _check(self) -> BackendStore:
        if self.type == "postgresql":
            if not self.dsn or not ENV_REFERENCE.match(self.dsn):
                raise ValueError("a postgresql backend store needs dsn as an ${env:NAME} reference (it holds a password)")
            if self.path:
                raise ValueError("path belongs to type: sqlite")
        elif self.dsn:
            raise ValueError("dsn belongs to type: postgresql")
        return self


class ArtifactStore(StrictModel):
    type: Literal["folder", "s3"] = Field("folder", description="where model artifacts live")
    path: str | None = Field(None, description="folder for artifacts (folder)")
    bucket: str | None = Field(None, description="bucket URI, e.g. s3://models (s3)")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint, e.g. an Ozone S3 gateway (s3)")
    access_key_id: str | None = Field(None, description="${env:NAME} holding the S3 access key (s3)")
    secret_access_key: str | None = Field(None, description="${env:NAME} holding the S3 secret key (s3)")

    @model_validator(mode="after")
    def _check(self) -> ArtifactStore:
        if self.type == "s3":
            if not self.bucket or not self.bucket.startswith("s3://"):
                raise ValueError("an s3 artifact store needs bucket: s3://<bucket>")
            for name in ("access_key_id", "secret_access_key"):
                value = getattr(self, name)
                if value is not None and not ENV_REFERENCE.match(value):
                    raise ValueError(f"{name} must be an ${{env:NAME}} reference, never the key itself")
        elif self.bucket or self.endpoint_url or self.access_key_id or self.secret_access_key:
            raise ValueError("bucket, endpoint_url and keys belong to type: s3")
        return self


class ModelRegistrySpec(StrictModel):
    uri: str | None = Field(
        None, pattern=r"^https?://", description="an external MLflow server (http[s]://...); omit to have cmlplan run one"
    )
    host: str | None = Field(
        None, description="address the managed server binds, or its port is published on with docker (default 127.0.0.1)"
    )
    port: int | None = Field(None, ge=1, le=65535, description="port of the managed server on this machine (default 5000)")
    backend_store: BackendStore | None = Field(None, description="managed server's database")
    artifacts: ArtifactStore | None = Field(None, description="managed server's artifact store")

    @model_validator(mode="after")
    def _check(self) -> ModelRegistrySpec:
        if self.uri and (self.backend_store or self.artifacts or self.port or self.host):
            raise ValueError("an external registry (uri) takes no host, port, backend_store or artifacts")
        return self
