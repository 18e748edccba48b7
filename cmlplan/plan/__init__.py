"""Plans: actions with reasons, the pure decide_action, and renderings for people and machines."""

from ..values import SENSITIVE, UNKNOWN, mask
from .action import Action, ActionReason
from .change import Drift, ResourceChange
from .decide import Decision, decide_action
from .jsonformat import plan_to_dict, plan_to_json
from .plan import Plan, PlanSummary
from .planfile import PlanFileError, load_plan, save_plan
from .render_markdown import render_markdown
from .render_text import render_text

__all__ = [
    "SENSITIVE",
    "UNKNOWN",
    "Action",
    "ActionReason",
    "Decision",
    "Drift",
    "Plan",
    "PlanFileError",
    "PlanSummary",
    "ResourceChange",
    "decide_action",
    "load_plan",
    "mask",
    "plan_to_dict",
    "plan_to_json",
    "render_markdown",
    "render_text",
    "save_plan",
]
