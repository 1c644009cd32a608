"""Why the new server's pod is not ready, read from pod status as the kubelet and scheduler
write it (shapes copied from real pods: kubectl get pod -o json)."""

from __future__ import annotations

from typing import Any

from dbmigrate.podstatus import MAX_MESSAGE, PodProblem, problem


def pod(*, conditions: list[dict[str, Any]] | None = None, containers: list[dict[str, Any]] | None = None,
        init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Pending", "conditions": conditions or []}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": {"name": "m1-target-0"}, "status": status}


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    w = {"reason": reason, **({"message": message} if message else {})}
    return {"name": "postgres", "ready": False, "restartCount": 0, "state": {"waiting": w}, **extra}


def test_no_pod_or_a_normal_start_is_no_problem() -> None:
    assert problem(None) is None
    assert problem(pod()) is None
    assert problem(pod(containers=[waiting("ContainerCreating")])) is None
    running = {"name": "postgres", "ready": False, "state": {"running": {"startedAt": "2026-11-27T22:00:00Z"}}}
    assert problem(pod(containers=[running])) is None


def test_an_image_that_cannot_be_pulled_needs_a_person() -> None:
    p = problem(pod(containers=[waiting("ImagePullBackOff", 'Back-off pulling image "registry.local/pg:99"')]))
    assert p is not None and p.needs_person and p.reason == "ImagePullBackOff"
    assert p.message == ('pod m1-target-0, container postgres: ImagePullBackOff: '
                         'Back-off pulling image "registry.local/pg:99"')
    assert "spec.target.image" in p.hint


def test_a_crash_loop_says_how_often_and_where_to_look() -> None:
    cs = waiting("CrashLoopBackOff", "back-off 40s restarting failed container=postgres pod=m1-target-0",
                 restartCount=3, lastState={"terminated": {"exitCode": 1, "reason": "Error"}})
    p = problem(pod(containers=[cs]))
    assert p is not None and p.needs_person
    assert p.message.endswith("(restarted 3 times, last exit code 1, Error)")
    assert p.hint == "the server exits at start: kubectl logs m1-target-0 -c postgres --previous"


def test_an_init_container_is_reported_first() -> None:
    p = problem(pod(init=[{**waiting("CreateContainerConfigError", 'secret "x" not found'), "name": "init"}],
                    containers=[waiting("PodInitializing")]))
    assert p is not None and p.needs_person and "container init" in p.message
    assert p.hint == "something the pod refers to is missing: kubectl describe pod m1-target-0"


def test_an_unschedulable_pod_is_explained_but_not_stalled() -> None:
    """An autoscaler may add the node: the Migration keeps waiting, saying why."""
    c = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient memory."}
    p = problem(pod(conditions=[c]))
    assert p == PodProblem("Unschedulable",
                           "pod m1-target-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory.")


def test_long_kubelet_messages_are_cut_to_one_line() -> None:
    p = problem(pod(containers=[waiting("ErrImagePull", "rpc error:\n" + "x" * 1000)]))
    assert p is not None and len(p.message) == MAX_MESSAGE and "\n" not in p.message
