"""Start a program with secrets from a 0600 JSON file added to its environment.

supervisord can only take a program's environment from its config file; so that file holds no
secret, a program with secrets runs as ``python -I -m cmlplan.providers.local.envexec FILE -- CMD...``
(see ``supervisor.Supervisor.add_program``). The file is read at every start, then this process
becomes the command (``execvpe``: same pid, so supervisord's signals reach it). Only the standard
library is imported, and ``-I`` keeps the program's working directory (model code) off ``sys.path``.
"""

import json
import os
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m cmlplan.providers.local.envexec FILE -- COMMAND [ARGS...]")
    path, command = argv[0], argv[2:]
    try:
        with open(path, encoding="utf-8") as handle:
            extra = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.exit(f"envexec: cannot read the program's secrets file {path}: {exc}")
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        sys.exit(f"envexec: {path} must hold one JSON object of strings")
    try:
        os.execvpe(command[0], command, {**os.environ, **extra})
    except OSError as exc:
        sys.exit(f"envexec: cannot run {command[0]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
