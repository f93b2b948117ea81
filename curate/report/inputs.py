"""Load the outputs of a ``curate screen`` run, tolerating the optional ones.

Only ``scores.parquet`` is required. Every other file may be missing: the loader
records a plain note and the report renders that section with the note instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.io import loads_json, read_capped, read_parquet

JSON_BYTES = 64 * 2**20  # the most bytes of a JSON file of the screen folder read

SCORE_COLUMNS = (
    "tuple_id",
    "anchor",
    "positive",
    "negative",
    "negative2",
    "anchor_label",
    "negative_label",
    "negative2_label",
    "split",
    "d_ap",
    "d_an",
    "d_an2",
    "d_nn2",
    "z_ap",
    "z_neg",
    "member_reasons",
    "redrawn",
    "redrawn_members",
    "keep",
    "reason",
)
REQUIRED_SCORE_COLUMNS = ("d_ap", "d_an", "keep", "reason", "anchor_label")
IMAGE_COLUMNS = ("image_id", "path", "rel_path", "label", "subject", "status")


@dataclass
class ScreenRun:
    """Everything the report reads from one screen output folder."""

    screen_dir: Path
    scores: pd.DataFrame
    boundary: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    images: pd.DataFrame | None = None  # index image_id; path, rel_path, label, ...
    images_origin: str | None = None  # where ``images`` came from, in words
    n_images_input: int | None = None  # rows of the build's images.parquet
    suspect: pd.DataFrame | None = None
    faces: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None  # calibration.parquet (curate screen --calibrate)
    build_run: dict[str, Any] | None = None
    n_kept_file: int | None = None
    n_rejected_file: int | None = None
    notes: dict[str, str] = field(default_factory=dict)  # section -> why it is thin

    @property
    def params(self) -> dict[str, Any]:
        """The screen's resolved parameters (empty when run.json is missing)."""
        return dict((self.run or {}).get("params") or {})

    @property
    def is_quadruplet(self) -> bool:
        return "d_an2" in self.scores.columns or "negative2" in self.scores.columns


def load_screen_dir(screen_dir: str | Path) -> ScreenRun:
    """Read a screen output folder into a :class:`ScreenRun`.

    Raises :class:`CurateError` when the folder or ``scores.parquet`` is missing or
    lacks a required column; every other input is optional.
    """
    root = Path(screen_dir)
    if not root.is_dir():
        raise CurateError(
            f"screen output folder not found: {root}",
            hint="pass the --out folder of `curate screen`",
        )
    scores = _read_scores(root / "scores.parquet")
    out = ScreenRun(screen_dir=root, scores=scores)
    out.run = _read_json(root / "run.json", out, "run")
    out.boundary = _read_json(root / "boundary.json", out, "boundary")
    out.suspect = _read_optional(root / "images_suspect.parquet", out, "suspect")
    out.faces = _read_optional(root / "faces.parquet", out, "faces")
    if (root / "calibration.parquet").exists():
        out.calibration = _read_optional(root / "calibration.parquet", out, "calibration")
    out.n_kept_file = _row_count(root / "kept.parquet")
    out.n_rejected_file = _row_count(root / "rejected.parquet")
    _attach_images(out)
    return out


def _read_scores(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise CurateError(
            f"scores.parquet not found in {path.parent}",
            hint="run `curate screen BUILD_DIR --out DIR` first, then `curate report DIR`",
        )
    try:
        names = set(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise CurateError(f"cannot read {path}: {exc}", hint="re-run `curate screen`") from exc
    missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in names]
    if missing:
        raise CurateError(
            f"{path} lacks column(s) {', '.join(missing)}",
            hint="re-run `curate screen` with this version of curate",
        )
    cols = [c for c in SCORE_COLUMNS if c in names]
    df = pd.read_parquet(path, columns=cols)
    df["keep"] = df["keep"].astype(bool)
    return df


def _read_json(path: Path, out: ScreenRun, section: str) -> dict[str, Any] | None:
    if not path.exists():
        out.notes[section] = f"{path.name} is missing from {path.parent}"
        return None
    try:
        obj = loads_json(read_capped(path, JSON_BYTES))
    except (OSError, ValueError) as exc:
        out.notes[section] = f"{path.name} could not be read: {exc}"
        return None
    if not isinstance(obj, dict):
        out.notes[section] = f"{path.name} does not hold a JSON object"
        return None
    return obj


def _read_optional(path: Path, out: ScreenRun, section: str) -> pd.DataFrame | None:
    if not path.exists():
        out.notes[section] = f"{path.name} is missing (the screen that writes it did not run)"
        return None
    try:
        return read_parquet(path, what=path.name)
    except CurateError as exc:
        out.notes[section] = exc.message
        return None


def _row_count(path: Path) -> int | None:
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None


def _candidate_image_tables(out: ScreenRun) -> list[Path]:
    """Where the build's images.parquet may be: a copy here, then the run's inputs."""
    found: list[Path] = [out.screen_dir / "images.parquet"]
    params = out.params
    raw: list[Any] = [params.get(k) for k in ("build_dir", "source", "build", "tuples_dir")]
    raw += list(((out.run or {}).get("inputs") or {}).values())
    for value in raw:
        if not isinstance(value, str) or not value:
            continue
        for base in (Path(value), out.screen_dir / value):
            found.append(base if base.name == "images.parquet" else base / "images.parquet")
    return found


def _attach_images(out: ScreenRun) -> None:
    for cand in _candidate_image_tables(out):
        try:
            if not cand.is_file():
                continue
            names = set(pq.read_schema(cand).names)
            df = pd.read_parquet(cand, columns=[c for c in IMAGE_COLUMNS if c in names])
        except (OSError, ValueError):
            continue
        if "image_id" not in df.columns or "path" not in df.columns:
            continue
        out.n_images_input = len(df)
        out.images = df.set_index("image_id", drop=False)
        out.images_origin = str(cand)
        run_json = cand.parent / "run.json"
        if run_json.exists():
            try:
                out.build_run = loads_json(read_capped(run_json, JSON_BYTES))
            except (OSError, ValueError):
                out.build_run = None
        return
    # Fall back on the per-image tables of the screen itself: they carry paths too.
    parts = [
        t
        for t in (out.suspect, out.faces)
        if t is not None and {"image_id", "path"} <= set(t.columns)
    ]
    if parts:
        cols = [c for c in IMAGE_COLUMNS if c in parts[0].columns]
        merged = pd.concat([p[[c for c in cols if c in p.columns]] for p in parts])
        merged = merged.drop_duplicates("image_id").set_index("image_id", drop=False)
        out.images = merged
        out.images_origin = "images_suspect.parquet / faces.parquet of the screen"
        out.notes["images"] = (
            "the build's images.parquet was not found; image paths come from "
            "images_suspect.parquet and faces.parquet"
        )
    else:
        out.notes["images"] = (
            "no image table was found (images.parquet of the build folder, "
            "images_suspect.parquet or faces.parquet), so thumbnails are left out"
        )
