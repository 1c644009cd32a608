"""docs/argocd-health.lua on every kind of status (real objects from the operator: see
tests/integration/test_gitops_argocd_health.py), run by a real Lua interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .argocd_lua import ROOT, health, to_lua


def mig(generation: int = 1, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "dbmigrate.dev/v1alpha1", "kind": "Migration",
                           "metadata": {"name": "m", "namespace": "n", "generation": generation},
                           "spec": {"mode": "test"}}
    if status:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, reason: str = "R", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": 1}


@pytest.mark.parametrize(("obj", "want", "in_message"), [
    (mig(), "Progressing", "Waiting for the dbmigrate operator"),
    (mig(generation=2, observedGeneration=1, phase="Ready", conditions=[cond("Ready", "True")]),
     "Progressing", "observe generation 2"),
    (mig(observedGeneration=1, phase="Pending",
         conditions=[cond("Ready", "False"), cond("Stalled", "True", message="StatefulSet 'pg' not found"),
                     cond("Reconciling", "False")]), "Degraded", "StatefulSet 'pg' not found"),
    (mig(observedGeneration=1, phase="Failed", message="copy failed: disk full",
         conditions=[cond("Ready", "False", message="copy failed")]), "Degraded", "copy failed: disk full"),
    (mig(observedGeneration=1, phase="Checking",
         conditions=[cond("Ready", "False"), cond("Reconciling", "True", message="running the pre-flight check")]),
     "Progressing", "pre-flight"),
    (mig(observedGeneration=1, phase="Copying", progress={"percent": 42}, conditions=[]), "Progressing", "Copying"),
    (mig(observedGeneration=1, phase="Ready", testServer={"host": "m-test.n.svc", "port": 5432},
         conditions=[cond("Ready", "True", message="test server ready")]), "Healthy", "m-test.n.svc:5432"),
    (mig(observedGeneration=3, generation=3, phase="Completed", locked=True,
         conditions=[cond("Ready", "True", message="moved to 17")]), "Healthy", "moved to 17"),
    (mig(observedGeneration=1, phase="Expired", message="test server removed after its TTL",
         conditions=[cond("Ready", "False")]), "Suspended", "TTL"),
    (mig(observedGeneration=1, phase="Replicating",
         conditions=[cond("Ready", "False"), cond("Reconciling", "True"),
                     cond("SwitchoverApproved", "False", "AwaitingApproval", "kubectl annotate migration m")]),
     "Suspended", "kubectl annotate"),
    (mig(observedGeneration=1, phase="SwitchingOver",
         conditions=[cond("Ready", "False"), cond("Reconciling", "True", message="fencing writes"),
                     cond("SwitchoverApproved", "True", "Approved")]), "Progressing", "fencing"),
])
def test_health(obj: dict[str, Any], want: str, in_message: str) -> None:
    status, message = health(obj)
    assert (status, in_message in message) == (want, True), message


def test_messages_survive_quotes_and_unicode() -> None:
    text = 'Secret "pg-admin" lacks key \'password\' — see docs\\n'
    status, message = health(mig(observedGeneration=1, phase="Pending",
                                 conditions=[cond("Stalled", "True", message=text)]))
    assert (status, message) == ("Degraded", text)


def test_lua_literal_encoder() -> None:
    assert to_lua({"a": [1, True, None, "x\"y"], "b": None}) == '{["a"] = {1, true, nil, "x\\034y"}}'


def test_docs_snippet_embeds_the_tested_script() -> None:
    """docs/argocd.md carries the argocd-cm snippet with exactly this script."""
    doc = (ROOT / "docs" / "argocd.md").read_text()
    script = (ROOT / "docs" / "argocd-health.lua").read_text()
    assert "resource.customizations.health.dbmigrate.dev_Migration: |" in doc
    indented = "\n".join(("    " + ln) if ln else "" for ln in script.splitlines())
    assert indented in doc, "docs/argocd.md is stale: run `python hack/gen-docs.py`"


def test_script_is_lua_5_1_compatible() -> None:
    """Argo CD runs gopher-lua (Lua 5.1): no integer division, goto, bit operators or utf8 library."""
    src = Path(ROOT / "docs" / "argocd-health.lua").read_text()
    for construct in ("//", "goto ", "utf8.", " & ", " | ", "<<", ">>", "math.type"):
        assert construct not in src.replace("-- ", ""), construct
