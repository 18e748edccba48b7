"""Proxy: the serving proxy, a managed resource like any other."""

from __future__ import annotations

from pydantic import Field

from .common import StrictModel
from .units import Duration, Size


class ProxySpec(StrictModel):
    host: str = Field("127.0.0.1", description="address the proxy listens on")
    port: int = Field(8787, ge=1, le=65535, description="port the proxy listens on")
    replicas: int = Field(1, ge=1, le=16, description="proxy processes sharing the port")
    busy_timeout: Duration = Field(30.0, gt=0, description="wait this long for a free replica, then 429 model.busy")
    request_timeout: Duration = Field(30.0, gt=0, description="a prediction slower than this answers 504")
    max_request_size: Size = Field(5_000_000, gt=0, description="larger requests answer 413")
    header_timeout: Duration = Field(
        60.0, gt=0, description="a request line and headers not received this long after they start answer 408"
    )
    body_timeout: Duration = Field(
        60.0, gt=0, description="a request body not received this long after its headers answers 408"
    )
    keepalive_timeout: Duration = Field(75.0, gt=0, description="an idle keep-alive connection is closed after this")
