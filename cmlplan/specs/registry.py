"""ModelRegistry: an MLflow tracking/registry server cmlplan runs, or an external one by URI."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import StrictModel


class BackendStore(StrictModel):
    type: Literal["sqlite", "postgresql"] = Field("sqlite", description="database behind the registry")
    path: str | None = Field(None, description="SQLite file (sqlite)")
    dsn: str | None = Field(None, description="connection string; use ${env:NAME} for the password (postgresql)")


class ArtifactStore(StrictModel):
    type: Literal["folder", "s3"] = Field("folder", description="where model artifacts live")
    path: str | None = Field(None, description="folder for artifacts (folder)")
    bucket: str | None = Field(None, description="bucket URI, e.g. s3://models (s3)")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (s3)")


class ModelRegistrySpec(StrictModel):
    uri: str | None = Field(None, description="an external MLflow server; omit to have cmlplan run one")
    port: int | None = Field(None, ge=1, le=65535, description="port of the managed server")
    backend_store: BackendStore | None = Field(None, description="managed server's database")
    artifacts: ArtifactStore | None = Field(None, description="managed server's artifact store")

    @model_validator(mode="after")
    def _check(self) -> ModelRegistrySpec:
        if self.uri and (self.backend_store or self.artifacts or self.port):
            raise ValueError("an external registry (uri) takes no backend_store, artifacts or port")
        return self
