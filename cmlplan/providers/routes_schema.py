"""The JSON Schema of the routes file (``schemas/routes-v1.json``): what providers write, the proxy reads.

Kept as data beside the writer so reader, writer and the checked-in schema cannot drift apart; a
test compares the checked-in file with this one.
"""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://cmlplan.dev/schemas/routes-v1.json"

_NAME = {"type": "string", "minLength": 1}
_SECONDS = {"type": "number", "exclusiveMinimum": 0}

ROUTES_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "cmlplan routes file",
    "description": "The serving proxy's routing table (run/routes.json), written by providers, read by the proxy.",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "generation", "salt", "proxy", "models", "api_keys", "projects"],
    "properties": {
        "version": {"const": 1},
        "generation": {"type": "integer", "minimum": 0},
        "salt": {"type": "string", "pattern": "^[0-9a-f]*$"},
        "proxy": {
            "type": "object",
            "additionalProperties": False,
            "required": ["busy_timeout", "request_timeout", "max_request_bytes"],
            "properties": {
                "busy_timeout": _SECONDS,
                "request_timeout": _SECONDS,
                "max_request_bytes": {"type": "integer", "minimum": 1},
                "header_timeout": _SECONDS,
                "body_timeout": _SECONDS,
                "keepalive_timeout": _SECONDS,
                "metrics_store": {
                    "description": "Where the proxy writes model metrics: a SQLite file, or a PostgreSQL DSN "
                    "read from the proxy's environment variable (no password in this file).",
                    "oneOf": [
                        {"type": "object", "additionalProperties": False, "required": ["url"],
                         "properties": {"url": {"type": "string", "pattern": "^sqlite:."}}},
                        {"type": "object", "additionalProperties": False, "required": ["dsn_env"],
                         "properties": {"dsn_env": _NAME}},
                    ],
                },
                "metrics_retention_days": _SECONDS,
                "technical_flush_seconds": _SECONDS,
            },
        },
        "listen": {
            "type": "object",
            "additionalProperties": False,
            "required": ["host", "port"],
            "properties": {"host": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}},
        },
        "models": {
            "description": "Routes by the model's access key hash.",
            "type": "object",
            "additionalProperties": {"$ref": "#/$defs/model"},
        },
        "api_keys": {
            "description": "API keys by their hash.",
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "user"],
                "properties": {
                    "name": _NAME,
                    "user": _NAME,
                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
        },
        "projects": {
            "description": "Collaborators (user -> role) by project name.",
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "$defs": {
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["address", "project", "name", "replicas"],
            "properties": {
                "address": _NAME,
                "project": _NAME,
                "name": _NAME,
                "authentication": {"type": "boolean"},
                "stopped": {"type": "boolean"},
                "deployment_id": {"type": ["integer", "null"]},
                "build": {"type": "string", "description": "the build serving now (the metrics store's modelBuildCrn)"},
                "replicas": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["id", "url"],
                        "properties": {"id": _NAME, "url": {"type": "string", "pattern": "^http://"}},
                    },
                },
            },
        },
    },
}
