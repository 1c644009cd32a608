"""Every manifest under examples/ is accepted by the real apiserver (CRD schema + CEL)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controlplane import ControlPlane

pytestmark = pytest.mark.integration
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_is_an_example_per_mode_and_strategy() -> None:
    specs = [d["spec"] for f in EXAMPLES for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == "Migration"]
    assert {s.get("mode") for s in specs} == {"test", "execute"}
    assert {(s.get("execute") or {}).get("strategy", "auto") for s in specs if s["mode"] == "execute"} == {
        "auto", "logical", "dump"}
    assert any("smokeTest" in (s.get("test") or {}) for s in specs)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_applies(control_plane: ControlPlane, namespace: str, path: Path) -> None:
    out = control_plane.kubectl("apply", "-n", namespace, "-f", str(path)).stdout
    assert "created" in out
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "Migration":
            got = control_plane.kubectl("get", "-n", namespace, "mig", doc["metadata"]["name"], "-o",
                                        "jsonpath={.spec.target.version}").stdout
            assert got == str(doc["spec"]["target"]["version"])
