"""HTTP probes a rollout uses: replica health, example requests, the proxy's routing generation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp


class ProbeFailed(Exception):
    """A replica or the proxy did not answer as a rollout needs; the message is one line."""


async def wait_healthy(
    session: aiohttp.ClientSession, url: str, timeout: float, still_starting: Callable[[], str | None]
) -> None:
    """Poll ``url``/healthz until 200; ``still_starting`` returns a reason to give up early (e.g. FATAL)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
                last = f"/healthz answered {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last = type(exc).__name__
        reason = still_starting()
        if reason:
            raise ProbeFailed(reason)
        await asyncio.sleep(0.1)
    raise ProbeFailed(f"not healthy after {timeout:.0f}s ({last})")


async def check_example(
    session: aiohttp.ClientSession, url: str, example: dict[str, Any], timeout: float
) -> None:
    """POST the example input to a replica; compare with the expected output when one is given."""
    body = json.dumps(example.get("input")).encode()
    try:
        async with session.post(
            f"{url}/predict", data=body, headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ProbeFailed(f"example input {_short(example.get('input'))} got no answer ({type(exc).__name__})") from None
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        raise ProbeFailed(f"example input {_short(example.get('input'))}: replica answered {status} with non-JSON") from None
    judge_answer(example, status, answer)


def judge_answer(example: dict[str, Any], status: int, answer: Any) -> None:
    """Raise ProbeFailed unless ``answer`` (a replica's JSON reply) is what ``example`` expects."""
    if not isinstance(answer, dict):
        raise ProbeFailed(f"example input {_short(example.get('input'))}: replica answered {status} with {_short(answer)}")
    if status != 200 or not answer.get("success"):
        errors = answer.get("errors") if isinstance(answer, dict) else None
        raise ProbeFailed(f"example input {_short(example.get('input'))} failed with {status}: {_short(errors)}")
    expected = example.get("output")
    if expected is not None and answer.get("response") != expected:
        raise ProbeFailed(
            f"example input {_short(example.get('input'))} answered {_short(answer.get('response'))},"
            f" expected {_short(expected)}"
        )


async def proxy_generation(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as response:
            if response.status != 200:
                return None
            data = await response.json(content_type=None)
            return int(data.get("generation", -1))
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError, TypeError, AttributeError):
        return None


async def wait_generation(session: aiohttp.ClientSession, url: str, generation: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = await proxy_generation(session, url)
        if seen is not None and seen >= generation:
            return True
        await asyncio.sleep(0.05)
    return False


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
