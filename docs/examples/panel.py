"""A customer control panel's use of dbmigrate, with the official Kubernetes Python client.

Runs with nothing more than the built-in `edit` role in the customer's namespace (the chart
aggregates Migration rights into it). Steps:
  1. create a test Migration (the apiserver validates it; a 422 carries a message for the user);
  2. follow it with a watch on that one object, printing each change of phase, condition,
     progress and findings;
  3. stop when a human is needed (Stalled / Failed: exit 2), when the test server is ready
     (print its address and the Secret with its login: exit 0), or at the timeout (exit 1).

    python docs/examples/panel.py -n customer-42 --name pg-to-17 --statefulset pg \\
        --service pg --secret pg-admin --version 17
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "dbmigrate.dev", "v1alpha1", "migrations"
watch_module: Any = kubernetes.watch


def test_migration(name: str, statefulset: str, service: str, secret: str, version: str,
                   ttl: str = "24h") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Migration", "metadata": {"name": name},
            "spec": {"mode": "test",
                     "source": {"statefulSetName": statefulset, "serviceName": service,
                                "credentialsSecretName": secret},
                     "target": {"version": version}, "test": {"ttl": ttl}}}


def create(api: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create the Migration; an invalid one raises ValueError with the apiserver's message."""
    try:
        obj: Any = kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as e:
        if e.status == 422:
            raise ValueError(json.loads(e.body or "{}").get("message", e.body)) from e
        raise
    return dict(obj)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c.get("type") == type_), {})


def describe(obj: dict[str, Any]) -> list[str]:
    """What a panel shows: phase, message, progress, findings, and the test server when there is one."""
    st = obj.get("status") or {}
    lines = [f"phase: {st.get('phase', '(waiting for the operator)')} - {st.get('message', '')}".rstrip(" -")]
    for c in st.get("conditions", []):
        lines.append(f"  {c['type']}={c['status']} ({c.get('reason', '')}): {c.get('message', '')}")
    if prog := st.get("progress"):
        lines.append(f"  progress: {prog.get('percent', 0)}% ({prog.get('tablesCopied', 0)}/"
                     f"{prog.get('tablesTotal', '?')} tables)")
    for f in st.get("findings", []):
        lines.append(f"  [{f.get('severity')}] {f.get('code')} {f.get('object', '')}: {f.get('message')}"
                     + (f" -> {f['hint']}" if f.get("hint") else ""))
    if (ts := st.get("testServer")) and ts.get("host"):
        lines.append(f"test server: {ts['host']}:{ts.get('port', 5432)} (login in Secret "
                     f"{ts.get('credentialsSecretName', '?')}, removed at {ts.get('expiresAt', '?')})")
    return lines


def outcome(obj: dict[str, Any]) -> int | None:
    """0 test server ready, 2 a human must act, None still working."""
    st = obj.get("status") or {}
    if st.get("observedGeneration") != obj["metadata"].get("generation"):
        return None  # the status describes an older spec
    if st.get("phase") == "Failed" or condition(obj, "Stalled").get("status") == "True":
        return 2
    if condition(obj, "Ready").get("status") == "True":
        return 0
    return None


def follow(api: kubernetes.client.ApiClient, namespace: str, name: str, timeout: float = 600,
           out: Callable[[str], None] = print) -> int:
    """Watch one Migration until it needs nobody (0), needs a human (2) or the timeout (1)."""
    co = kubernetes.client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while time.monotonic() < deadline:
        w: Any = watch_module.Watch()  # kubernetes.watch is untyped
        # A watch ends after timeout_seconds (and on any network hiccup): simply start another.
        for event in w.stream(co.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                              field_selector=f"metadata.name={name}",
                              timeout_seconds=max(1, min(60, int(deadline - time.monotonic())))):
            obj = event["object"]
            if event["type"] == "DELETED":
                out(f"{name} was deleted")
                return 2
            lines = describe(obj)
            if lines != shown:
                shown = lines
                for ln in lines:
                    out(ln)
            result = outcome(obj)
            if result is not None:
                w.stop()
                return result
    out(f"still working after {timeout:.0f}s")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--namespace", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--statefulset", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--version", required=True, help="target major version, e.g. 17")
    ap.add_argument("--kubeconfig", default=None)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    api: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig)
    try:
        create(api, args.namespace, test_migration(args.name, args.statefulset, args.service, args.secret,
                                                   args.version))
    except ValueError as e:
        print(f"rejected: {e}")
        return 2
    print(f"created Migration {args.namespace}/{args.name}; following it")
    return follow(api, args.namespace, args.name, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
