"""Key files: a new key's plaintext, written once to a 0600 file beside the state for its owner,
and the workspace's fingerprint key.

State, plans and logs only ever hold hashes; this folder is the one place a plaintext key lands,
like an SSH private key, so `cmlplan call` and `cmlplan output -raw` can use it. The fingerprint key
(``fingerprint-key``, HMAC key for the fingerprints of ``${env:...}`` values) lives here too; runners
that do not have this folder (CI) get it from ``CMLPLAN_FINGERPRINT_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import CmlplanError
from ..secrets import FingerprintKey
from .addresses import file_name

FINGERPRINT_KEY_ENV = "CMLPLAN_FINGERPRINT_KEY"
FINGERPRINT_KEY_FILE = "fingerprint-key"  # no dot: never the file name of an address


class FingerprintKeyError(CmlplanError):
    """The fingerprint key given is not one (wrong length or not hex)."""


class KeyFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, address: str) -> Path:
        return self.folder / file_name(address)

    def write(self, address: str, secret: str) -> Path:
        return self._write(self.path_for(address), secret)

    def read(self, address: str) -> str | None:
        try:
            return self.path_for(address).read_text().strip()
        except FileNotFoundError:
            return None

    def remove(self, address: str) -> None:
        self.path_for(address).unlink(missing_ok=True)

    def rename(self, old: str, new: str) -> None:
        """Move ``old``'s key file to ``new`` (a renamed model keeps its key); no file, nothing to do."""
        source = self.path_for(old)
        if source.exists():
            os.replace(source, self.path_for(new))

    # -- the fingerprint key ----------------------------------------------------------------------

    @property
    def fingerprint_key_path(self) -> Path:
        return self.folder / FINGERPRINT_KEY_FILE

    def fingerprint_key(self, environ: Mapping[str, str]) -> tuple[FingerprintKey | None, str]:
        """The key given by ``CMLPLAN_FINGERPRINT_KEY`` or this folder's file (the variable wins),
        and where it came from; (None, "") when neither has one."""
        text = environ.get(FINGERPRINT_KEY_ENV)
        where = FINGERPRINT_KEY_ENV
        if not text:
            where = str(self.fingerprint_key_path)
            try:
                text = self.fingerprint_key_path.read_text()
            except FileNotFoundError:
                return None, ""
            except OSError as exc:
                raise FingerprintKeyError(f"{where}: cannot read the fingerprint key ({exc.strerror})") from None
        try:
            return FingerprintKey.from_text(text), where
        except ValueError as exc:
            raise FingerprintKeyError(f"{where}: {exc}") from None

    def create_fingerprint_key(self) -> FingerprintKey:
        """A new fingerprint key in its 0600 file; if another run created one first, that one."""
        key = FingerprintKey.generate()
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        temporary = self.folder / f".{FINGERPRINT_KEY_FILE}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key.to_text() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, self.fingerprint_key_path)  # whole or absent; never replaces another run's key
        except FileExistsError:
            found, _where = self.fingerprint_key({})
            assert found is not None
            return found
        finally:
            temporary.unlink(missing_ok=True)
        return key

    def _write(self, path: Path, secret: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret)
        os.replace(temporary, path)
        return path
