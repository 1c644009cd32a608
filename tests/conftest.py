"""Shared test setup: make `hack/` importable (the control-plane helper lives there)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "hack", ROOT / "operator"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
