"""Proxy: the serving proxy, a managed resource like any other."""

from __future__ import annotations

from pydantic import Field

from ..serving.defaults import (
    BODY_TIMEOUT,
    BUSY_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT,
)
from .common import StrictModel
from .units import Duration, Size


class ProxySpec(StrictModel):
    host: str = Field("127.0.0.1", description="address the proxy listens on")
    port: int = Field(8787, ge=1, le=65535, description="port the proxy listens on")
    replicas: int = Field(1, ge=1, le=16, description="proxy processes sharing the port")
    busy_timeout: Duration = Field(BUSY_TIMEOUT, gt=0, description="wait this long for a free replica, then 429 model.busy")
    request_timeout: Duration = Field(REQUEST_TIMEOUT, gt=0, description="a prediction slower than this answers 504")
    max_request_size: Size = Field(MAX_REQUEST_BYTES, gt=0, description="larger requests answer 413")
    header_timeout: Duration = Field(
        HEADER_TIMEOUT, gt=0, description="a request line and headers not received this long after they start answer 408"
    )
    body_timeout: Duration = Field(
        BODY_TIMEOUT, gt=0, description="a request body not received this long after its headers answers 408"
    )
    keepalive_timeout: Duration = Field(
        KEEPALIVE_TIMEOUT, gt=0, description="an idle keep-alive connection is closed after this"
    )
