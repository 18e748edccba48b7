"""`cmlplan logs`: which provider shows the logs of an address, asked through its optional ability."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import CmlplanError
from ..providers.base import LogLine, LogRequest, ShowingLogs
from .addresses import deployment_address, parse_address
from .session import Session


async def stream_logs(
    session: Session, text: str, replica: int | None, since: float | None, follow: bool
) -> AsyncIterator[LogLine]:
    """The lines of a model's (or deployment's) replicas and build, or of the proxy."""
    address = parse_address(text)
    if address.kind == "model":
        target = deployment_address(address.name)
    elif address.kind in ("deployment", "proxy"):
        target = str(address)
    else:
        raise CmlplanError(f"{text}: logs are kept for models, deployments and the proxy (e.g. proxy.default)")
    resource = session.document.resources.get(target)
    if resource is None:
        raise CmlplanError(f"{text}: {target} is not in the state; apply first")
    if replica is not None and address.kind == "proxy":
        raise CmlplanError("--replica is for a model's replicas, not the proxy")
    provider = session.providers.get(resource.provider)
    if not isinstance(provider, ShowingLogs):
        raise CmlplanError(f"{text}: the {resource.provider} provider cannot show logs")
    request = LogRequest(
        address=target, attributes=dict(resource.attributes), replica=replica, since=since, follow=follow
    )
    async for line in provider.logs(request):
        yield line
