"""``cmlplan.metrics``: the model metrics SDK (it lives in cmlplan.serving.metrics so builds ship it)."""

from cmlplan.serving.metrics import *  # noqa: F403
from cmlplan.serving.metrics import __all__  # noqa: F401
