"""bench/ by kind (bench/README.md): every script starts (``--help`` exits 0 with its usage,
so a renamed module, a moved helper or an import the script no longer finds fails here, not
in a benchmark run), lives in its kind's folder, and imports shared code one way, from
``bench.common`` or the package, never another script by bare name."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
KINDS = ("speed", "quality", "experiments", "derivations", "recipes", "audit")
# modules the scripts import, not scripts themselves
LIBRARIES = {
    "common/paths.py",
    "common/metrics.py",
    "common/probe.py",
    "common/browser.py",
    "common/screen_folder.py",
}


def _modules() -> list[Path]:
    return sorted(p for p in BENCH.rglob("*.py") if p.name != "__init__.py")


def _scripts() -> list[Path]:
    return [p for p in _modules() if p.relative_to(BENCH).as_posix() not in LIBRARIES]


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports (absolute imports only, anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def _help(script: Path) -> tuple[Path, int, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    res = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    return script, res.returncode, res.stdout + res.stderr


def test_every_bench_script_answers_help() -> None:
    scripts = _scripts()
    assert len(scripts) >= 25
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_help, scripts))
    bad = [
        f"{s.relative_to(ROOT)}: exit {rc}: {out[-300:]}"
        for s, rc, out in results
        if rc != 0 or "usage:" not in out
    ]
    assert not bad, "\n".join(bad)


def test_scripts_live_in_their_kinds_folder() -> None:
    loose = sorted(
        p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh") and p.name != "__init__.py"
    )
    assert not loose, f"scripts outside a kind's folder: {loose}"
    folders = {p.relative_to(BENCH).parts[0] for p in _modules()}
    assert folders <= set(KINDS) | {"common"}, folders
    listed = (BENCH / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in _scripts() if f"`{p.name}`" not in listed]
    assert not missing, f"scripts bench/README.md does not list: {missing}"


def test_shared_code_is_imported_one_way() -> None:
    stems = {p.stem for p in _modules()}
    bad = {}
    for path in _modules():
        names = _imports(path)
        bare = sorted(n for n in names if n.split(".")[0] in stems)
        if bare:
            bad[path.relative_to(ROOT).as_posix()] = bare
    assert not bad, f"bench modules imported by bare name (use bench.common...): {bad}"


def test_bench_depends_on_no_test_module() -> None:
    """The tests may use bench.common (the fabricated screen folder, the browser); bench never
    imports a test module, by name or through a sys.path edit."""
    test_modules = {p.stem for p in (ROOT / "tests").glob("*.py")}
    bad = {}
    for path in _modules():
        names = _imports(path)
        hits = sorted(n for n in names if n.split(".")[0] in test_modules | {"tests"})
        if hits or "sys.path" in path.read_text(encoding="utf-8"):
            bad[path.relative_to(ROOT).as_posix()] = hits or ["sys.path"]
    assert not bad, f"bench modules that reach into tests/: {bad}"


def test_recipes_and_package_depend_on_no_bench_script() -> None:
    for path in (BENCH / "recipes").glob("*.py"):
        others = sorted(
            n for n in _imports(path) if n.startswith("bench.") and not n.startswith("bench.common")
        )
        assert not others, f"{path.name} imports {others}"
    in_package = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "curate").rglob("*.py")
        if any(n == "bench" or n.startswith("bench.") for n in _imports(p))
    )
    assert not in_package, in_package
