"""Write the JSON schemas kubeconform validates against, offline, for one Kubernetes version.

kubeconform normally downloads its schemas; this machine (and CI) has no internet. The PyPI
package `kubernetes-validate` ships the upstream OpenAPI of every Kubernetes minor as JSON schema,
but in a "local" layout whose $refs point into a shared `/api/_definitions.json` that kubeconform
cannot resolve. This script turns it into kubeconform's standalone layout
(`<kind>-<group>-<version>.json`, every $ref inlined into a local `$defs`), and adds schemas for
the CRDs in the given directories (ours and kopf's peering CRDs) so custom resources are checked too.

Steps:
  1. Locate `<kubernetes_validate>/kubernetes-json-schema/v<VERSION>-local-strict`.
  2. For every top-level kind file: collect the definitions it reaches, rewrite the refs, write it.
  3. For every CRD version: its openAPIV3Schema in strict form (additionalProperties: false
     where properties are listed, int-or-string as oneOf), apiVersion/kind pinned.
Usage: python hack/gen-schemas.py OUT_DIR --kube-version 1.34.0 --crds crds charts/dbmigrate/crds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REF_PREFIX = "/api/_definitions.json#/$defs/"


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (("#/$defs/" + v.rsplit("/", 1)[-1]) if k == "$ref" and isinstance(v, str) else _rewrite(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def standalone(doc: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema with every definition it reaches (transitively) copied into its own $defs."""
    need: set[str] = set()
    _refs(doc, need)
    todo, seen = list(need), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        more: set[str] = set()
        _refs(defs[name], more)
        todo.extend(more - seen)
    out: dict[str, Any] = _rewrite(doc)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$defs"] = {n: _rewrite(defs[n]) for n in sorted(seen)}
    return out


def strict_crd_schema(node: Any) -> Any:
    """A CRD's structural schema as kubeconform expects it (openapi2jsonschema --strict)."""
    if isinstance(node, list):
        return [strict_crd_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_crd_schema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") or k == "x-kubernetes-preserve-unknown-fields"}
    if node.get("x-kubernetes-int-or-string"):
        out = {k: v for k, v in out.items() if k != "type"}
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        out["additionalProperties"] = False
    out.pop("x-kubernetes-preserve-unknown-fields", None)
    return out


def crd_schemas(crd_dirs: list[Path]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in crd_dirs:
        for f in sorted(d.glob("*.yaml")):
            for crd in yaml.safe_load_all(f.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                group, kind = spec["group"], spec["names"]["kind"]
                for v in spec["versions"]:
                    schema = strict_crd_schema(v["schema"]["openAPIV3Schema"])
                    props = schema.setdefault("properties", {})
                    props["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
                    props["kind"] = {"type": "string", "enum": [kind]}
                    props["metadata"] = {"type": "object"}
                    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
                    out[f"{kind.lower()}-{group.split('.')[0]}-{v['name']}.json"] = schema
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--kube-version", default="1.34.0")
    ap.add_argument("--crds", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    import kubernetes_validate  # type: ignore[import-untyped]  # the schema source (PyPI)

    src = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{args.kube_version}-local-strict"
    if not src.is_dir():
        print(f"gen-schemas: {src} not found (kubernetes-validate too old for {args.kube_version}?)", file=sys.stderr)
        return 1
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(src.glob("*.json")):
        if f.name.startswith("_") or f.name == "all.json":
            continue
        doc = json.loads(f.read_text())
        # Only kinds a manifest can contain (they pin apiVersion/kind); sub-structures are inlined.
        if "kind" not in doc.get("properties", {}):
            continue
        (args.out / f.name).write_text(json.dumps(standalone(doc, defs), separators=(",", ":")))
        n += 1
    for name, schema in crd_schemas(args.crds).items():
        (args.out / name).write_text(json.dumps(schema, indent=1))
        n += 1
    print(f"gen-schemas: wrote {n} schemas for Kubernetes {args.kube_version} to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
