"""API key checks for models deployed with ``authentication: true``."""

import time

from .errors import ProxyError
from .routes import ModelRoute, RoutingTable

_BEARER = b"bearer "


def authorize(table: RoutingTable, model: ModelRoute, authorization: bytes | None) -> None:
    """Return if the bearer key may call model, else raise ProxyError 401/403."""
    if authorization is None or authorization[:7].lower() != _BEARER:
        raise ProxyError(
            401, "auth.missing", "this model requires an 'Authorization: Bearer <API key>' header"
        )
    api_key = table.find_api_key(authorization[7:].strip().decode("latin-1"))
    if api_key is None:
        raise ProxyError(401, "auth.invalid", "the API key is not valid")
    if api_key.expires_at is not None and api_key.expires_at <= time.time():
        raise ProxyError(403, "auth.expired", f"the API key {api_key.name!r} has expired")
    if not table.is_collaborator(model.project, api_key.user):
        raise ProxyError(
            403, "auth.forbidden", f"user {api_key.user!r} is not a collaborator of project {model.project!r}"
        )
