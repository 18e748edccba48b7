"""What a plan does to one resource, and why: the reason explains the plan to people."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # destroy, then create (-/+)
    CREATE_THEN_DELETE = "create-then-delete"  # a replace that never leaves a gap (+/-)
    DELETE = "delete"
    READ = "read"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]

    @property
    def changes(self) -> bool:
        return self not in (Action.NOOP, Action.READ)


_SYMBOLS = {
    Action.NOOP: " ",
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.REPLACE: "-/+",
    Action.CREATE_THEN_DELETE: "+/-",
    Action.DELETE: "-",
    Action.READ: "<=",
}


class ActionReason(StrEnum):
    """Why, as a sentence: shown to people, never branched on by apply."""

    NONE = "none"
    CREATE_BECAUSE_NEW = "create_because_new"
    CREATE_BECAUSE_GONE = "create_because_deleted_outside_cmlplan"
    CREATE_BECAUSE_NEW_BUILD = "create_because_source_changed"
    UPDATE_BECAUSE_SPEC_CHANGED = "update_because_spec_changed"
    UPDATE_BECAUSE_DRIFT = "update_because_changed_outside_cmlplan"
    REPLACE_BY_REQUEST = "replace_by_request"
    REPLACE_BECAUSE_SOURCE_CHANGED = "replace_because_source_changed"
    REPLACE_BECAUSE_CANNOT_UPDATE = "replace_because_cannot_update"
    DELETE_BECAUSE_NO_SPEC = "delete_because_no_spec"
    DELETE_BECAUSE_DESTROY = "delete_because_destroy"
    DELETE_BECAUSE_PARENT_DELETED = "delete_because_model_deleted"

    @property
    def sentence(self) -> str:
        return _SENTENCES[self]


_SENTENCES = {
    ActionReason.NONE: "",
    ActionReason.CREATE_BECAUSE_NEW: "it is new in the specs",
    ActionReason.CREATE_BECAUSE_GONE: "it was deleted outside cmlplan",
    ActionReason.CREATE_BECAUSE_NEW_BUILD: "the model's source or dependencies changed",
    ActionReason.UPDATE_BECAUSE_SPEC_CHANGED: "the specs changed",
    ActionReason.UPDATE_BECAUSE_DRIFT: "it was changed outside cmlplan",
    ActionReason.REPLACE_BY_REQUEST: "replacement was requested with -replace",
    ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED: "it serves a new build",
    ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE: "a changed attribute cannot be updated in place",
    ActionReason.DELETE_BECAUSE_NO_SPEC: "it is no longer in the specs",
    ActionReason.DELETE_BECAUSE_DESTROY: "destroy was requested",
    ActionReason.DELETE_BECAUSE_PARENT_DELETED: "its model is being deleted",
}
