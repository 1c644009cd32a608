"""Why the new server's pod is not ready, from its status as the API returns it (camelCase).

"Waiting for the target server" alone leaves a user guessing for minutes; the pod's status
says it: not schedulable, an image that cannot be pulled, a server that exits at start. Only
the reasons no retry can fix stall the Migration (a person must act); the others (pulling,
creating, a full cluster an autoscaler may grow) are shown while it waits. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Where the images come from, for the hint of a pull failure.
TARGET_IMAGE = "spec.target.image, or the operator's image for this version"
WORKER_IMAGE = "the operator's worker image for this version (the chart's workerImages)"

# Kubelet waiting reasons that stay until someone changes the image, the pod's inputs or the
# server's configuration (the kubelet keeps retrying, in vain).
_NEEDS_PERSON = {
    "ErrImagePull": "the nodes cannot pull the image: check {image}, and the nodes' access to its registry",
    "ImagePullBackOff": "the nodes cannot pull the image: check {image}, and the nodes' access to its registry",
    "InvalidImageName": "fix {image}",
    "CreateContainerConfigError": "something the pod refers to is missing: kubectl describe pod {pod}",
    "CreateContainerError": "the runtime cannot create the container: kubectl describe pod {pod}",
    "CrashLoopBackOff": "the server exits at start: kubectl logs {pod} -c {container} --previous",
}
MAX_MESSAGE = 300


@dataclass(frozen=True)
class PodProblem:
    reason: str        # the kubelet's or scheduler's word: ImagePullBackOff, Unschedulable ...
    message: str       # one line for status.message
    hint: str = ""     # what to do; set only when a person must act
    needs_person: bool = False

    @property
    def image_pull(self) -> bool:
        """A pull failure: for an image that ran a minute ago (a restart), more likely a
        registry or network hiccup than a wrong image."""
        return self.reason in ("ErrImagePull", "ImagePullBackOff")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def problem(pod: dict[str, Any] | None, container: str = "postgres", image: str = TARGET_IMAGE) -> PodProblem | None:
    """The first thing keeping ``pod`` from being ready, or None when nothing is known to be
    wrong (no pod yet, or it is starting normally). ``image``: where its image comes from."""
    if not pod:
        return None
    name = str((pod.get("metadata") or {}).get("name") or "the pod")
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return PodProblem("Unschedulable", _short(f"pod {name} cannot be scheduled: {c.get('message') or ''}"))
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if not reason or reason in ("ContainerCreating", "PodInitializing"):
            continue
        what = f"pod {name}, container {cs.get('name')}: {reason}"
        if waiting.get("message"):
            what += f": {waiting['message']}"
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if last:
            what += (f" (restarted {cs.get('restartCount', 0)} times, last exit code {last.get('exitCode')}"
                     f"{', ' + str(last['reason']) if last.get('reason') else ''})")
        hint = _NEEDS_PERSON.get(reason)
        return PodProblem(reason, _short(what),
                          hint.format(pod=name, container=cs.get("name") or container, image=image) if hint else "",
                          needs_person=hint is not None)
    return None
