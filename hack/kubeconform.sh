#!/usr/bin/env bash
# Provide kubeconform (built from the Go module proxy) and print its path on the last line.
# Idempotent: a warm run is a stat. The schemas it validates against are generated offline by
# hack/gen-schemas.py (from the PyPI package kubernetes-validate + our CRDs), not downloaded.
set -euo pipefail
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
CACHE="${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}"
BIN="$CACHE/tools/kubeconform-$KUBECONFORM_VERSION"
if [[ ! -x "$BIN/kubeconform" ]]; then
  mkdir -p "$BIN"
  echo "[kubeconform] building $KUBECONFORM_VERSION from the Go module proxy" >&2
  GOBIN="$BIN.tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
  mv "$BIN.tmp/kubeconform" "$BIN/kubeconform"
  rmdir "$BIN.tmp"
fi
echo "$BIN/kubeconform"
