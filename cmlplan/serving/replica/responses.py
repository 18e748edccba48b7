"""The replica's error bodies: JSON only, in CML's shape."""

import json


def error_body(code: str, message: str) -> bytes:
    """The CML error shape, for answers that are not about a prediction."""
    return json.dumps({"success": False, "errors": {code: message}}).encode()
