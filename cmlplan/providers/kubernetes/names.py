"""Object names and labels: what makes an object cmlplan's, of which workspace and which resource.

Names are DNS-1035 labels (Services need a leading letter), at most 63 characters: a name that
would be longer keeps its start and ends with a hash of the whole, so two long names never meet.
Label values cannot hold ``/``, so the exact address travels as an annotation and the label holds
a readable, length-bounded form of it (``deployment.iris.petal-width``).
"""

from __future__ import annotations

import hashlib
import re

MANAGER = "cmlplan"  # the server-side apply field manager
ROUTES_MANAGER = "cmlplan-routes"  # owns only the proxy's routes digest (deployments bump it)

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_WORKSPACE = "cmlplan.dev/workspace"
LABEL_ADDRESS = "cmlplan.dev/address"
LABEL_BUILD = "cmlplan.dev/build"
ANNOTATION_ADDRESS = "cmlplan.dev/address"
ANNOTATION_ROUTES = "cmlplan.dev/routes-digest"
ANNOTATION_ENV = "cmlplan.dev/env-fingerprints"

MAX_NAME = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def bounded(name: str, limit: int = MAX_NAME) -> str:
    """``name`` if short enough, else its start plus 8 hex of its hash (still DNS-1123)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def model_object(workspace: str, project: str, model: str) -> str:
    """The Deployment, Service (and HPA, env Secret) of one model."""
    return bounded(f"cmlplan-{workspace}-{project}-{model}")


def proxy_object(workspace: str) -> str:
    return bounded(f"cmlplan-{workspace}-proxy")


def routes_secret(workspace: str) -> str:
    return bounded(f"cmlplan-{workspace}-routes")


def metrics_secret(workspace: str) -> str:
    """The proxy's metrics store DSN (a Secret: it holds a password)."""
    return bounded(f"cmlplan-{workspace}-metrics")


def env_secret(workspace: str, project: str, model: str) -> str:
    return bounded(f"cmlplan-{workspace}-{project}-{model}-env")


def address_label(address: str) -> str:
    """A label value for ``address`` (``/`` and ``#`` are not allowed in label values)."""
    value = bounded(address.replace("/", ".").replace("#", "."))
    if not _LABEL_VALUE.match(value):  # names are DNS-safe, so this only guards against new kinds
        value = hashlib.sha256(address.encode()).hexdigest()[:40]
    return value


def base_labels(workspace: str, address: str, component: str) -> dict[str, str]:
    """Labels every object of ``address`` carries; the selector uses these (never the build)."""
    return {
        LABEL_MANAGED_BY: MANAGER,
        LABEL_NAME: "cmlplan",
        LABEL_COMPONENT: component,
        LABEL_WORKSPACE: workspace,
        LABEL_ADDRESS: address_label(address),
    }


def selector(workspace: str, address: str, component: str) -> dict[str, str]:
    """The pod selector of ``address``: fixed for the resource's life (a Deployment's is immutable)."""
    return {
        LABEL_WORKSPACE: workspace,
        LABEL_ADDRESS: address_label(address),
        LABEL_COMPONENT: component,
    }


def workspace_selector(workspace: str) -> str:
    """The label selector that lists every object of a workspace."""
    return f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_WORKSPACE}={workspace}"
