"""Calls to replicas over one keep-alive aiohttp session; every upstream failure is mapped here.

Outcomes of one call:
- the replica's own answer (200 success, 500 model.exception, 400) -> passed through as bytes;
- ``Retry``: the replica could not take the request (refused connection before anything was
  sent, or 429 replica.busy because another proxy process holds it) -> try another replica;
- ``ProxyError`` 504 model.timeout (no answer within request_timeout) or 502 replica.failed
  (connection reset, replica died mid-request, or an answer that is not the replica contract).
"""

import logging
from functools import lru_cache

import aiohttp
from yarl import URL

from .errors import ProxyError
from .pool import Replica

log = logging.getLogger("cmlplan.proxy")

DOWN_COOLDOWN = 1.0  # a replica that refused a connection is not tried again for this long
BUSY_COOLDOWN = 0.02  # poll interval for a replica busy with another proxy process
CONNECT_TIMEOUT = 1.0  # a healthy replica on this host or network accepts far sooner
KEEP_ALIVE_SECONDS = 60.0  # shorter than the replica's own keep-alive, so we close first
_PASS_THROUGH = frozenset({200, 400, 500})
_HEADERS = {"Content-Type": "application/json"}


class Retry(Exception):
    """The replica did not start this prediction: cool it down for ``cooldown`` s, try another."""

    def __init__(self, cooldown: float, *, down: bool) -> None:
        super().__init__()
        self.cooldown = cooldown
        self.down = down


class Upstream:
    """Owns the client session; create and close it inside the running event loop."""

    def __init__(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            keepalive_timeout=KEEP_ALIVE_SECONDS,
            use_dns_cache=True,
            ttl_dns_cache=1,  # docker replicas are found by name; a replaced one must be looked up again
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
        )
        self._urls: dict[str, URL] = {}

    async def close(self) -> None:
        await self._session.close()

    async def predict(self, replica: Replica, body: bytes, address: str, timeout: float) -> tuple[int, bytes]:
        """POST body to the replica's /predict: (status, body) to pass through, or raise."""
        url = self._urls.get(replica.url)
        if url is None:
            url = self._urls[replica.url] = URL(replica.url + "/predict")
        try:
            async with self._session.post(
                url, data=body, headers=_HEADERS, timeout=_timeout(timeout)
            ) as reply:
                payload = await reply.read()
                status = reply.status
        except aiohttp.ClientConnectorError as exc:
            log.warning("%s: replica %s refused the connection: %s", address, replica.id, exc.os_error)
            raise Retry(DOWN_COOLDOWN, down=True) from None
        except aiohttp.ConnectionTimeoutError:
            # nothing was sent: a replica that cannot even be connected to is down, try another
            log.warning("%s: replica %s did not accept a connection within %.1fs", address, replica.id, CONNECT_TIMEOUT)
            raise Retry(DOWN_COOLDOWN, down=True) from None
        except TimeoutError:
            log.warning("%s: replica %s did not answer within %.1fs", address, replica.id, timeout)
            raise ProxyError(
                504, "model.timeout", f"the model did not answer within {timeout:g} seconds"
            ) from None
        except aiohttp.ClientError as exc:
            log.warning("%s: replica %s failed mid-request: %s", address, replica.id, type(exc).__name__)
            raise ProxyError(
                502, "replica.failed", "the model replica failed while handling the request"
            ) from None
        if status in _PASS_THROUGH:
            return status, payload
        if status == 429:
            raise Retry(BUSY_COOLDOWN, down=False)
        log.warning("%s: replica %s answered unexpected status %d", address, replica.id, status)
        raise ProxyError(502, "replica.failed", f"the model replica answered HTTP {status}")


@lru_cache(maxsize=16)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(CONNECT_TIMEOUT, seconds))
