"""Key files: a new key's plaintext, written once to a 0600 file beside the state for its owner.

State, plans and logs only ever hold hashes; this folder is the one place a plaintext key lands,
like an SSH private key, so `cmlplan call` and `cmlplan output -raw` can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .addresses import file_name


class KeyFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, address: str) -> Path:
        return self.folder / file_name(address)

    def write(self, address: str, secret: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        path = self.path_for(address)
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret)
        os.replace(temporary, path)
        return path

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
