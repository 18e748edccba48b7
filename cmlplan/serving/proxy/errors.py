"""The proxy's client-facing errors: one exception type carrying status, code and message."""

from .codec import encode


class ProxyError(Exception):
    """Ends a request with ``{"success": false, "errors": {code: message}}``.

    ``close`` asks the server to drop the connection after answering, for when the client may
    still be sending a body we refuse to read.
    """

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> bytes:
    return encode({"success": False, "errors": {code: message}})


INTERNAL = 500
INTERNAL_BODY = error_body("proxy.internal", "the proxy failed on this request; see its log")
