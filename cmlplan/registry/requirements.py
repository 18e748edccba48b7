"""What a registered model's build installs: its own requirements.txt, with ``mlflow`` served by
``mlflow-skinny``.

MLflow writes ``mlflow==<version>`` into every logged model's requirements. The full package
brings the tracking server along (Flask, SQLAlchemy, alembic, pyarrow, matplotlib, ...: about
340 MB more per venv or image), none of which ``mlflow.pyfunc.load_model`` uses: ``mlflow-skinny``
of the same version is the same ``mlflow`` package with the client's dependencies only. The
flavor's own libraries (scikit-learn, skops, ...) are in the model's requirements already; pandas
and numpy, which full mlflow would have brought and pyfunc needs, are added within full mlflow's
bounds when the model does not name them.

The rewrite happens at plan time, so the plan's ``requirements`` show what the build installs and
the build hash covers it.
"""

from __future__ import annotations

import re

from ..providers.source import normalize_name

SKINNY = "mlflow-skinny"
# what full mlflow requires and the pyfunc serving path imports, with full mlflow's own bounds
PYFUNC_NEEDS = {"pandas": "pandas<4", "numpy": "numpy<3"}
_REQUIREMENT = re.compile(r"^(\s*)([A-Za-z0-9][A-Za-z0-9._-]*)(\s*)(.*)$")


def serving_requirements(text: str) -> str:
    """``text`` with a plain ``mlflow<specifier>`` line turned into ``mlflow-skinny<specifier>``.

    Lines with extras (``mlflow[gateway]``), URLs or options are left alone, and so is a text that
    names no mlflow (nothing to swap). Comments and order are kept.
    """
    lines = text.splitlines()
    swapped = False
    named: set[str] = set()
    for index, line in enumerate(lines):
        match = _REQUIREMENT.match(line)
        if match is None or line.lstrip().startswith(("-", "#")):
            continue
        lead, name, space, rest = match.groups()
        named.add(normalize_name(name))
        if normalize_name(name) == "mlflow" and not rest.startswith(("[", "@")) and "://" not in rest:
            lines[index] = f"{lead}{SKINNY}{space}{rest}"
            swapped = True
    if not swapped:
        return text
    lines += [requirement for name, requirement in PYFUNC_NEEDS.items() if name not in named]
    return "\n".join(lines) + "\n"
