"""``export``: the images that survive the screens, for other trainers.

Reads ``images_suspect.parquet`` of a ``curate screen`` folder and keeps the images
that no image screen rejected (the ``<prefix>_reject`` column of every registered image
screen: ``face_reject``, ``label_reject``, ...) and, with ``max_suspicion``, whose label
suspicion is below it; with ``relabel``, images whose only fault is their label are kept
under their ``suggested_label``. Valid
images of the build that are in no tuple were never screened: they are counted
(``n_unscreened``) and exported only with ``include_unscreened``. Writes
them as an ImageFolder of symlinks or copies (``OUT/[split/]label/file``, which
timm's ``train.py``, torchvision's ``ImageFolder`` and Hugging Face's ``imagefolder``
read directly) or as a CSV / Parquet manifest (``OUT/manifest.csv|parquet``).

The export is built in a temporary sibling folder and renamed into place, so OUT is
either the complete export or untouched. ``OUT/export.json`` records the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from curate import screens
from curate.errors import CurateError
from curate.io import read_parquet, run_record, write_json, write_parquet
from curate.sources import BUILD_IMAGES_FILE, screen_build_dir

FORMATS = ("imagefolder", "csv", "parquet")
MANIFEST_COLUMNS = ["image_id", "path", "rel_path", "label", "split", "suspicion", "suggested_label"]
NO_SPLIT = "unsplit"


@dataclass
class ExportResult:
    """What :func:`export` wrote."""

    out_dir: Path
    target: Path
    n_exported: int
    n_excluded: int
    n_suspect: int
    n_face_rejected: int
    n_image_rejected: dict[str, int]  # images left out because of each image screen
    n_relabelled: int
    n_unscreened: int | None  # valid images in no tuple (None: build folder not found)
    per_label: dict[str, int]
    manifest: pd.DataFrame


def export(screen_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
           max_suspicion: float | None = None, relabel: bool = False,
           format: str = "imagefolder", copy: bool = False, force: bool = False,
           include_unscreened: bool = False) -> ExportResult:
    """Export the surviving images of ``screen_dir`` into ``out`` (see module doc).

    Every image an image screen rejected is left out. ``max_suspicion`` also leaves out
    images whose label ``suspicion`` (the label screen's probability that the label is
    wrong) is at least this. With ``relabel`` the images the label screen rejected (and no
    other screen) are exported under their ``suggested_label`` instead of being left out;
    the manifest keeps the ``original_label``.

    ``out`` must be absent or empty; with ``force`` an earlier curate export there is
    replaced (a non-empty folder that is not a curate export is never touched).
    """
    started = time.time()
    if format not in FORMATS:
        raise CurateError(f"unknown export format {format!r}", hint=f"use --format one of {', '.join(FORMATS)}")
    if max_suspicion is not None and not 0 < max_suspicion <= 1:
        raise CurateError(f"--max-suspicion must be in (0, 1], got {max_suspicion}",
                          hint="for example --max-suspicion 0.5")
    src = Path(screen_dir).expanduser()
    target = Path(out).expanduser()
    _check_target(target, force)
    table = read_parquet(src / "images_suspect.parquet", what="suspect-images table")
    if (max_suspicion is not None or relabel) and "suspicion" not in table.columns:
        raise CurateError(f"{src / 'images_suspect.parquet'} has no label suspicion (the label "
                          "screen did not run)", hint="re-run curate screen without --skip-label-screen, "
                          "or drop --max-suspicion / --relabel")
    suspect = np.zeros(len(table), dtype=bool)
    if max_suspicion is not None:
        suspect = pd.to_numeric(table["suspicion"], errors="coerce").fillna(0).to_numpy() >= max_suspicion
    rejected_by = image_rejects(table)
    relabelled = np.zeros(len(table), dtype=bool)
    if relabel and "label" in rejected_by:
        others = [v for k, v in rejected_by.items() if k != "label"]
        relabelled = rejected_by["label"] & ~np.logical_or.reduce([*others, relabelled])
        rejected_by = {**rejected_by, "label": rejected_by["label"] & ~relabelled}
    image_bad = np.logical_or.reduce([*rejected_by.values(), np.zeros(len(table), dtype=bool)])
    face_bad = rejected_by.get("faces", np.zeros(len(table), dtype=bool))
    keep = ~suspect & ~image_bad
    table = table.copy()
    if relabel:
        table["original_label"] = table["label"]
        table.loc[relabelled, "label"] = table.loc[relabelled, "suggested_label"]
    cols = MANIFEST_COLUMNS + (["original_label"] if relabel else [])
    manifest = table.loc[keep, [c for c in cols if c in table.columns]]
    unscreened = _unscreened_images(src, table)
    if include_unscreened and unscreened is not None and len(unscreened):
        manifest = pd.concat([manifest, unscreened[[c for c in MANIFEST_COLUMNS if c in unscreened.columns]]],
                             ignore_index=True)
    n_unscreened = None if unscreened is None else len(unscreened)
    n_exported = len(manifest)
    manifest = manifest.sort_values("image_id", kind="mergesort").reset_index(drop=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=_parent(target)))
    try:
        if format == "imagefolder":
            manifest = _write_imagefolder(manifest, tmp, copy)
        elif format == "csv":
            manifest.to_csv(tmp / "manifest.csv", index=False)
        else:
            write_parquet(manifest, tmp / "manifest.parquet")
        params = {"screen_dir": str(src.resolve()), "max_suspicion": max_suspicion, "relabel": relabel,
                  "format": format, "copy": copy, "force": force,
                  "include_unscreened": include_unscreened}
        counts = {"images": len(table), "exported": n_exported, "excluded": int((~keep).sum()),
                  "suspect": int(suspect.sum()), "face_rejected": int(face_bad.sum()),
                  "image_rejected_by_screen": {k: int(v.sum()) for k, v in rejected_by.items()},
                  "relabelled": int((relabelled & keep).sum()),
                  "unscreened": n_unscreened}
        write_json(run_record("export", params, inputs={"screen_dir": str(src.resolve())},
                              counts=counts, started=started), tmp / "export.json")
        if target.exists():
            shutil.rmtree(target) if any(target.iterdir()) else target.rmdir()
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    per_label = {str(k): int(v) for k, v in manifest["label"].value_counts().sort_index().items()}
    return ExportResult(out_dir=target, target=target, n_exported=n_exported,
                        n_excluded=int((~keep).sum()), n_suspect=int(suspect.sum()),
                        n_face_rejected=int(face_bad.sum()),
                        n_image_rejected={k: int(v.sum()) for k, v in rejected_by.items()},
                        n_relabelled=int((relabelled & keep).sum()),
                        n_unscreened=n_unscreened,
                        per_label=per_label, manifest=manifest)


def _unscreened_images(src: Path, table: pd.DataFrame) -> pd.DataFrame | None:
    """Valid images of the build folder that are in no tuple (never screened)."""
    build = screen_build_dir(src)
    if build is None:
        return None
    images = read_parquet(build / BUILD_IMAGES_FILE, what="images table")
    ok = images[images["status"].eq("ok") & ~images["image_id"].isin(table["image_id"])].copy()
    ok["suspicion"] = float("nan")
    return ok


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise CurateError(f"--out {target} exists and is not a folder", hint="choose another --out")
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise CurateError(f"--out {target} is not empty; curate export never overwrites it",
                              hint="pass --force to replace an earlier export, or choose an empty folder")
        if not (target / "export.json").is_file():
            raise CurateError(f"--out {target} is not empty and does not hold a curate export "
                              "(no export.json); --force only replaces earlier exports",
                              hint="choose an empty or new folder")


def _parent(target: Path) -> Path:
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def image_rejects(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per registered image screen whose ``<prefix>_reject`` column is in ``table``: its
    verdict (a ``<prefix>_reason`` column alone also counts, for older screen folders)."""
    out = {}
    for s in screens.registered():
        if s.level != "image":
            continue
        _, reject_col, reason_col = s.columns()
        if reject_col in table.columns:
            out[s.name] = table[reject_col].fillna(False).astype(bool).to_numpy()
        elif reason_col in table.columns:
            out[s.name] = table[reason_col].notna().to_numpy()
    return out


def _write_imagefolder(manifest: pd.DataFrame, root: Path, copy: bool) -> pd.DataFrame:
    """Link or copy each image to ``root/[split/]label/name``; adds the ``exported`` column."""
    with_split = "split" in manifest.columns and manifest["split"].notna().any()
    used: set[Path] = set()
    written: list[str] = []
    for row in manifest.itertuples(index=False):
        folder = root
        if with_split:
            folder = folder / _safe(row.split if isinstance(row.split, str) else NO_SPLIT)
        folder = folder / _safe(str(row.label))
        name = Path(str(row.path)).name
        dest = folder / name
        if dest in used:  # same file name from two source folders
            dest = folder / f"{row.image_id}_{name}"
        used.add(dest)
        folder.mkdir(parents=True, exist_ok=True)
        source = Path(str(row.path))
        if not source.exists():
            raise CurateError(f"image {row.rel_path} is gone: {source}",
                              hint="re-run curate build-tuples and curate screen on the current data")
        if copy:
            shutil.copy2(source, dest)
        else:
            os.symlink(source.resolve(), dest)
        written.append(str(dest.relative_to(root)))
    out = manifest.copy()
    out["exported"] = written
    return out


def _safe(part: str) -> str:
    cleaned = part.strip().replace(os.sep, "_").replace("\0", "")
    if cleaned in ("", ".", ".."):
        raise CurateError(f"label or split {part!r} cannot be a folder name",
                          hint="use --format csv or --format parquet")
    return cleaned
