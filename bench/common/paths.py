"""The folders the bench scripts read and write, from this checkout."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
# the real data (read-only), beside the checkout: ../shared/data
DATA = ROOT.parent / "shared" / "data"
# the hand labels, blind audits and near-duplicate pairs (bench/audit/README.md)
AUDIT = BENCH / "audit"
RESULTS = BENCH / "results"
