"""The public API: every command is a typed top-level function of ``curate``, and
``import curate`` stays cheap."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from builders import make_build, write_embeddings

import curate

NO_IMAGE_SCREENS = {
    "skip_faces_screen": True,
    "skip_quality_screen": True,
    "skip_not_face_screen": True,
    "skip_near_duplicates_screen": True,
}


def test_every_export_is_what_its_module_defines() -> None:
    import importlib

    for name, module in curate._EXPORTS.items():
        assert getattr(curate, name) is getattr(importlib.import_module(module), name), name
    assert set(curate.__all__) == set(curate._EXPORTS)


def test_screen_and_export_are_the_functions_even_after_their_modules_are_imported(
    tmp_path: Path,
) -> None:
    import curate.export  # noqa: F401  (binds nothing over the function)
    import curate.ingest  # noqa: F401
    import curate.screen  # noqa: F401

    assert inspect.isfunction(curate.screen) and curate.screen.__module__ == "curate.screen"
    assert inspect.isfunction(curate.export) and curate.export.__module__ == "curate.export"
    assert inspect.isfunction(curate.ingest) and curate.ingest.__module__ == "curate.ingest"
    assert "build_dir" in inspect.signature(curate.screen).parameters

    build, images, emb = make_build(tmp_path)
    emb_file = write_embeddings(tmp_path / "emb.parquet", images, emb)
    res = curate.screen(build, tmp_path / "screen", embeddings=emb_file, **NO_IMAGE_SCREENS)
    assert res.n_tuples == res.n_kept + res.n_rejected > 0
    assert "label" in res.screens_run and "boundary" in res.screens_run
    out = curate.export(tmp_path / "screen", tmp_path / "clean", format="csv")
    assert out.n_exported > 0 and (tmp_path / "clean").is_dir()
    assert curate.write_report(tmp_path / "screen").name == "report.html"
    assert {m.name for m in curate.list_models()} >= {"fer_resnet10t"}


def test_type_checkers_see_every_export() -> None:
    """The TYPE_CHECKING block of curate/__init__.py imports every public name (so mypy
    types ``curate.screen`` as the function, not Any)."""
    source = Path(curate.__file__).read_text()
    block = source.split("if TYPE_CHECKING:")[1].split("\n\n")[0]
    for name, module in curate._EXPORTS.items():
        assert f"from {module} import {name} as {name}" in block, name


def _loaded_by(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys; {statement}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_curate_and_the_finetune_config_stay_cheap() -> None:
    heavy = ("torch", "mediapipe", "curate.faces", "curate.screens.faces", "curate.screens.label")
    heavy += ("curate.screens.near_duplicates", "curate.hygiene", "pandas", "timm")
    assert _loaded_by("import curate, curate.train.config", heavy) == []


def test_import_curate_screens_stays_cheap() -> None:
    """The registry's package loads no pandas, no torch and no built-in screen until it is used
    (the plug-in packages and the CLI import it to register and list screens)."""
    heavy = ("pandas", "pyarrow", "torch", "curate.tuples", "curate.screens.label")
    heavy += ("curate.screens.boundary", "curate.screens.faces", "curate.faces")
    assert _loaded_by("import curate.screens", heavy) == []


def test_the_console_scripts_import_of_main_stays_cheap() -> None:
    """The face workers that `curate screen` spawns re-run the console script, which imports
    ``main`` from curate.cli: that must load no command (pandas, typer, the library), and the
    commands must all be there once ``app`` is asked for, in pipeline order."""
    heavy = ("pandas", "typer", "torch", "curate.cli._app", "curate.cli.screen", "curate.screen")
    assert _loaded_by("from curate.cli import main", heavy) == []
    from curate.cli import app

    names = [c.name for c in app.registered_commands]
    assert names[:2] == ["example", "build-tuples"] and names[-1] == "models"
    assert {"screen", "export", "report", "finetune", "evaluate", "predict", "faces"} <= set(names)


def test_renamed_modules_keep_their_old_import_path() -> None:
    from curate.distributed import RayEngine as old
    from curate.ray_engine import RayEngine

    assert old is RayEngine


def test_the_maths_imports_no_screen() -> None:
    """curate.stats is below the screens: importing all of it loads no screen module, and the
    label screen's maths keeps its old names in curate.screens.label (the same objects)."""
    code = (
        "import sys; import curate.stats.nulls, curate.stats.simulate, curate.stats.label_model; "
        "print(','.join(m for m in sys.modules if m.startswith('curate.screens')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported with curate.stats: {out.stdout}"
    from curate.screens import label
    from curate.stats import label_model

    for name in ("label_posteriors", "encode_labels", "cap_per_class", "LabelModel", "PRIOR_FLOOR"):
        assert getattr(label, name) is getattr(label_model, name), name


def test_the_boundary_maths_keeps_its_old_import_path_and_is_no_screen() -> None:
    import importlib

    import curate.screens as screens

    for name in ("statistical", "nulls", "fused", "simulate"):
        old = importlib.import_module(f"curate.screens.{name}")
        assert old is importlib.import_module(f"curate.stats.{name}"), name
        assert name not in screens.BUILTIN_MODULES
        assert name not in screens.names()
