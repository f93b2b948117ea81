"""Every script in bench/ starts: ``--help`` exits 0 with its usage (a renamed module, a
moved helper or an import the script no longer finds fails here, not in a benchmark run)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# modules the scripts import, not scripts themselves
LIBRARIES = {"holdout.py"}


def _scripts() -> list[Path]:
    return sorted(p for p in (ROOT / "bench").rglob("*.py") if p.name not in LIBRARIES)


def _help(script: Path) -> tuple[Path, int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env,
                         timeout=300, cwd=ROOT)
    return script, res.returncode, res.stdout + res.stderr


def test_every_bench_script_answers_help() -> None:
    scripts = _scripts()
    assert len(scripts) >= 25
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_help, scripts))
    bad = [f"{s.relative_to(ROOT)}: exit {rc}: {out[-300:]}" for s, rc, out in results
           if rc != 0 or "usage:" not in out]
    assert not bad, "\n".join(bad)
