"""Resource addresses: `model.iris/petal-width`, `build.iris/petal-width#3`, `deployment.iris/petal-width`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import CmlplanError

KINDS = ("workspace", "proxy", "registry", "project", "apikey", "model", "build", "deployment")
_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_PATTERN = re.compile(
    rf"^(?P<kind>[a-z]+)\.(?P<name>{_NAME}(/{_NAME})?)(#(?P<number>[1-9][0-9]*))?(\.(?P<attribute>[a-z_]+))?$"
)


class AddressError(CmlplanError):
    """A resource address that does not parse."""


@dataclass(frozen=True)
class Address:
    kind: str
    name: str  # "iris/petal-width" for model, build and deployment
    number: int | None = None  # builds only
    attribute: str | None = None  # e.g. access_key in -replace model.x/y.access_key

    def __str__(self) -> str:
        text = f"{self.kind}.{self.name}"
        if self.number is not None:
            text += f"#{self.number}"
        return text


def parse_address(text: str) -> Address:
    match = _PATTERN.match(text.strip())
    if not match or match.group("kind") not in KINDS:
        raise AddressError(
            f"{text!r} is not a resource address (like model.iris/petal-width, build.iris/petal-width#3, "
            "deployment.iris/petal-width, apikey.alice-ci, project.iris, proxy.default)"
        )
    kind = match.group("kind")
    name = match.group("name")
    number = match.group("number")
    needs_project = kind in ("model", "build", "deployment")
    if needs_project != ("/" in name):
        form = "<project>/<name>" if needs_project else "<name>"
        raise AddressError(f"{text!r}: a {kind} address is {kind}.{form}")
    if (number is not None) != (kind == "build"):
        raise AddressError(f"{text!r}: only build addresses carry #<number>, and they must")
    return Address(kind, name, int(number) if number else None, match.group("attribute"))


def model_address(name: str) -> str:
    return f"model.{name}"


def deployment_address(name: str) -> str:
    return f"deployment.{name}"


def build_address(name: str, number: int) -> str:
    return f"build.{name}#{number}"


def kind_of(address: str) -> str:
    return address.split(".", 1)[0]


def model_of(address: str) -> str:
    """`build.iris/x#3` or `deployment.iris/x` -> `model.iris/x`."""
    rest = address.split(".", 1)[1]
    return "model." + rest.split("#", 1)[0]


def file_name(address: str) -> str:
    """A file-system-safe form: `model.iris/petal-width` -> `model.iris_petal-width`."""
    return address.replace("/", "_").replace("#", "-")
