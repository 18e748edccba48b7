"""MLflow integration: resolve registered model versions, download their artifacts, and say how
to run a managed ``mlflow server``.

mlflow is an optional extra (``pip install 'cmlplan[mlflow]'``); nothing here imports it at module
level, so cmlplan without it still loads, and a spec that needs it fails validation with
``MLFLOW_HINT``.

Modules: ``availability`` (is mlflow installed), ``client`` (RegistryClient: answers, resolve,
download), ``resolved`` (ResolvedVersion, the artifact digest), ``server`` (the managed server's
command line and environment), ``errors``.
"""

from .availability import MLFLOW_HINT, mlflow_available
from .errors import RegistryError

__all__ = ["MLFLOW_HINT", "RegistryError", "mlflow_available"]
