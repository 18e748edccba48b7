"""Waiting for a Deployment's rollout, and explaining one that is stuck.

Kubernetes rolls the pods (RollingUpdate, maxUnavailable 0); cmlplan waits the way ``kubectl
rollout status`` does: the controller has seen the new generation, every replica is updated, no
old one is left, every updated one is available. Progress lines are printed when they change. A
rollout fails at its deadline, when the Deployment reports ProgressDeadlineExceeded, or at once
when a pod shows a state that does not heal by waiting (an image that cannot be pulled, a crash
loop, a bad container config); the error carries the pods' reasons and their latest events
(image pull errors, OOMKilled, unschedulable).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..base import Progress, ProviderError
from .api import KubeApi

# waiting reasons that end a rollout at once: waiting longer does not fix them
FATAL_WAITING = frozenset({
    "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})


class RolloutFailed(ProviderError):
    """The rollout did not finish; the message explains why with the pods' states and events."""


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str
    failed: str | None = None  # ProgressDeadlineExceeded and the like


def poll_interval() -> float:
    try:
        return max(0.01, float(os.environ.get("CMLPLAN_K8S_POLL", "1")))
    except ValueError:
        return 1.0


def rollout_status(deployment: dict[str, Any], generation: int) -> RolloutStatus:
    """kubectl's rollout-status logic for one Deployment as read now."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    observed = int(status.get("observedGeneration") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            detail = condition.get("message") or "no progress within progressDeadlineSeconds"
            return RolloutStatus(False, "progress deadline exceeded", f"ProgressDeadlineExceeded: {detail}")
    if observed < generation:
        return RolloutStatus(False, "waiting for the controller to see the new spec")
    if updated < wanted:
        return RolloutStatus(False, f"{updated} of {wanted} replicas updated, {available} available")
    if current > updated:
        return RolloutStatus(False, f"{current - updated} old replica(s) still terminating")
    if available < updated:
        return RolloutStatus(False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, f"{available} of {wanted} replicas available")


def pod_problems(pods: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """One phrase per pod that is not ready, and whether any of them cannot heal by waiting."""
    problems, fatal = [], False
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue  # an old pod on its way out
        reasons = []
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                reasons.append(f"{condition.get('reason') or 'not scheduled'}: {condition.get('message') or ''}".rstrip(": "))
        for container in status.get("containerStatuses") or []:
            state, last = container.get("state") or {}, container.get("lastState") or {}
            waiting = state.get("waiting")
            if waiting:
                reason = waiting.get("reason") or "waiting"
                fatal = fatal or reason in FATAL_WAITING
                reasons.append(f"{reason}: {waiting.get('message') or ''}".rstrip(": "))
            terminated = last.get("terminated") or state.get("terminated")
            if terminated:
                reasons.append(
                    f"last exit {terminated.get('reason') or 'terminated'} (code {terminated.get('exitCode')}, "
                    f"restarts {container.get('restartCount', 0)})"
                )
            if not waiting and not terminated and not container.get("ready"):
                reasons.append("running, not ready yet")
        if reasons:
            problems.append(f"pod {name}: {'; '.join(reasons)}")
    return problems, fatal


def event_lines(events: list[dict[str, Any]], limit: int = 3) -> list[str]:
    """The latest warning (else any) events as ``reason: message``."""
    def moment(event: dict[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("metadata", {}).get("creationTimestamp") or "")

    ordered = sorted(events, key=moment)
    warnings = [e for e in ordered if e.get("type") == "Warning"] or ordered
    return [f"{e.get('reason')}: {str(e.get('message') or '').strip()}" for e in warnings[-limit:]]


def _selector(deployment: dict[str, Any]) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def diagnose(api: KubeApi, deployment: dict[str, Any]) -> tuple[str, bool]:
    """Why the pods of ``deployment`` are not serving (with their events), and whether it is fatal."""
    pods = api.list("Pod", label_selector=_selector(deployment))
    problems, fatal = pod_problems(pods)
    details = []
    by_name = {p.get("metadata", {}).get("name"): p for p in pods}
    for problem in problems[:3]:
        pod_name = problem.split(":", 1)[0].removeprefix("pod ")
        events = event_lines(api.events("Pod", pod_name)) if pod_name in by_name else []
        details.append(problem + (f" [events: {' | '.join(events)}]" if events else ""))
    if not details:
        name = deployment.get("metadata", {}).get("name", "")
        events = event_lines(api.events("Deployment", name))
        details = [f"events: {' | '.join(events)}"] if events else ["no pod reports a problem"]
    return "; ".join(details), fatal


async def wait_rollout(
    api: KubeApi,
    name: str,
    generation: int,
    timeout: float,
    progress: Progress,
    what: str = "rollout",
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Wait until Deployment ``name`` has rolled out ``generation``; RolloutFailed otherwise."""
    deadline = clock() + timeout
    interval = poll_interval()
    last = ""
    polls = 0
    while True:
        deployment = await asyncio.to_thread(api.get, "Deployment", name)
        if deployment is None:
            raise RolloutFailed(f"Deployment/{name} disappeared during the {what}")
        status = rollout_status(deployment, generation)
        if status.done:
            if status.message != last:
                progress(f"{what}: {status.message}")
            return deployment
        if status.message != last:
            progress(f"{what}: {status.message}")
            last = status.message
        if status.failed is not None:
            why, _ = await asyncio.to_thread(diagnose, api, deployment)
            raise RolloutFailed(f"{what} of Deployment/{name} failed ({status.failed}): {why}")
        polls += 1
        if polls % 3 == 0:  # pods are listed every few polls: a stuck state is seen in seconds
            why, fatal = await asyncio.to_thread(diagnose, api, deployment)
            if fatal:
                raise RolloutFailed(f"{what} of Deployment/{name} cannot finish ({status.message}): {why}")
        if clock() >= deadline:
            why, _ = await asyncio.to_thread(diagnose, api, deployment)
            raise RolloutFailed(
                f"{what} of Deployment/{name} did not finish within {timeout:g}s ({status.message}): {why}"
            )
        await asyncio.sleep(interval)
