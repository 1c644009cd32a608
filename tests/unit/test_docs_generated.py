"""Generated docs are current: docs/api.md (from the CRD) and docs/argocd.md (embeds the Lua check)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "hack" / "gen-docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generated_docs_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in _gen().outputs().items()
             if not p.exists() or p.read_text() != text]
    assert stale == [], "stale generated docs: run `python hack/gen-docs.py`"


def test_api_md_lists_every_field_of_the_crd() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "dbmigrate.dev_migrations.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    doc = (ROOT / "docs" / "api.md").read_text()

    def walk(node: dict[str, object], path: str) -> list[str]:
        out = []
        props = node.get("properties") or {}
        assert isinstance(props, dict)
        for name, child in props.items():
            if name == "kopf":
                continue
            p = f"{path}.{name}"
            out.append(p)
            items = child.get("items")
            out += walk(items, p + "[]") if child.get("type") == "array" and items else walk(child, p)
        return out
    fields = walk(schema["properties"]["spec"], "spec") + walk(schema["properties"]["status"], "status")
    assert len(fields) > 50
    missing = [f for f in fields if f"| `{f}`" not in doc]
    assert missing == []
    for rule in schema["x-kubernetes-validations"]:
        assert rule["message"] in doc


def test_generator_detects_a_stale_file(tmp_path: Path) -> None:
    """Negative control: a changed description changes the output."""
    gen = _gen()
    crd = yaml.safe_load((ROOT / "crds" / "dbmigrate.dev_migrations.yaml").read_text())
    before = gen.api_md(crd)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["mode"][
        "description"] = "CHANGED"
    after = gen.api_md(crd)
    assert before != after and "CHANGED" in after
