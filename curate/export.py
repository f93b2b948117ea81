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

Folder names are the labels and splits themselves where they are plain text; any other
character (``/``, ``\\``, NUL, control characters, ``%``, and a leading ``.``, which
would hide the folder) is written as ``%XX`` (UTF-8 bytes, as in URLs), so two labels
never share a folder, no folder is hidden, and ``urllib.parse.unquote(folder)`` gives the
label back; ``export.json`` records the map (``folders``). A CSV manifest neutralises
text cells that a spreadsheet would run as a formula (see :func:`csv_safe`).

OUT follows :mod:`curate.outdir`: new, empty, or an earlier export (other settings need
``force``). A new export deletes only the files the earlier one wrote (listed in its
``export.json``), never anything else in OUT; ``export.json`` is written last and says
whether the export completed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from curate import screens
from curate.errors import CurateError
from curate.io import atomic_path, read_json_file, read_parquet, run_record, write_parquet
from curate.outdir import claim_folder, require_complete
from curate.sources import BUILD_IMAGES_FILE, screen_build_dir

FORMATS = ("imagefolder", "csv", "parquet")
MANIFEST_COLUMNS = ["image_id", "path", "rel_path", "label", "split", "suspicion", "suggested_label"]
NO_SPLIT = "unsplit"
RECORD = "export.json"
MANIFESTS = ("manifest.csv", "manifest.parquet")
# kept as they are in folder and file names; every other character is %XX-encoded
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_+,=@()[]{}!~&;#$'")
_PLAIN_NAME = re.compile("[" + re.escape("".join(sorted(_PLAIN))) + "][" + re.escape("".join(sorted(_PLAIN | {"."}))) + "]*")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
    folders: dict[str, dict[str, str]] = field(default_factory=dict)  # label/split -> folder name
    notes: list[str] = field(default_factory=list)


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

    ``out`` must be new, empty, or an earlier export: the same settings re-export, other
    settings need ``force``; only the files an earlier export wrote are replaced (a
    folder that holds anything but a curate export is never touched).
    """
    started = time.time()
    if format not in FORMATS:
        raise CurateError(f"unknown export format {format!r}", hint=f"use --format one of {', '.join(FORMATS)}")
    if max_suspicion is not None and not 0 < max_suspicion <= 1:
        raise CurateError(f"--max-suspicion must be in (0, 1], got {max_suspicion}",
                          hint="for example --max-suspicion 0.5")
    src = Path(screen_dir).expanduser()
    require_complete(src, what="screen folder")
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

    _refuse_unlisted_export(Path(out).expanduser())
    settings = {"screen_dir": str(src.resolve()), "max_suspicion": max_suspicion, "relabel": relabel,
                "format": format, "copy": copy, "include_unscreened": include_unscreened}
    folders: dict[str, dict[str, str]] = {}
    with claim_folder(out, "export", settings=settings, inputs=[src, screen_build_dir(src)], force=force,
                      owned=MANIFESTS) as claim:
        target = claim.path
        if format == "imagefolder":
            manifest, folders = plan_imagefolder(manifest, target)
            files = manifest["exported"].tolist()
            claim.will_write(files)
            _write_imagefolder(manifest, target, copy)
        elif format == "csv":
            files = ["manifest.csv"]
            with atomic_path(target / "manifest.csv") as tmp:
                csv_safe(manifest).to_csv(tmp, index=False)
        else:
            files = ["manifest.parquet"]
            write_parquet(manifest, target / "manifest.parquet")
        params = {**settings, "force": force}
        counts = {"images": len(table), "exported": n_exported, "excluded": int((~keep).sum()),
                  "suspect": int(suspect.sum()), "face_rejected": int(face_bad.sum()),
                  "image_rejected_by_screen": {k: int(v.sum()) for k, v in rejected_by.items()},
                  "relabelled": int((relabelled & keep).sum()), "unscreened": n_unscreened}
        claim.finish(run_record("export", params, inputs={"screen_dir": str(src.resolve())},
                                counts=counts, started=started), files=files, folders=folders)
    per_label = {str(k): int(v) for k, v in manifest["label"].value_counts().sort_index().items()}
    return ExportResult(out_dir=target, target=target, n_exported=n_exported,
                        n_excluded=int((~keep).sum()), n_suspect=int(suspect.sum()),
                        n_face_rejected=int(face_bad.sum()),
                        n_image_rejected={k: int(v.sum()) for k, v in rejected_by.items()},
                        n_relabelled=int((relabelled & keep).sum()), n_unscreened=n_unscreened, per_label=per_label, manifest=manifest,
                        folders=folders, notes=[claim.note] if claim.note else [])


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or
    a carriage return prefixed by ``'``: spreadsheets then show the cell as text instead
    of running it as a formula (CSV injection). Numbers are left alone."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return out


def folder_name(part: str) -> str:
    """The folder (or file) name of a label, split or file name: plain characters as they
    are, every other one (and a leading ``.``) as ``%XX`` of its UTF-8 bytes. Injective,
    reversed by ``urllib.parse.unquote``, never hidden, never empty."""
    if _PLAIN_NAME.fullmatch(part) and len(part) <= 255:  # the usual case, without a loop per character
        return part
    out = []
    for i, ch in enumerate(part):
        if ch in _PLAIN or (ch == "." and i > 0) or (ord(ch) > 127 and unicodedata.category(ch)[0] in "LN"):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
    name = "".join(out)
    if not name:
        raise CurateError("an empty label or split cannot be a folder name", hint="use --format csv or --format parquet")
    if len(name.encode("utf-8")) > 255:
        raise CurateError(f"label, split or file name {part[:60]!r}... is too long for a folder or file name "
                          f"({len(name.encode('utf-8'))} bytes encoded, at most 255)",
                          hint="use --format csv or --format parquet")
    return name


def _unscreened_images(src: Path, table: pd.DataFrame) -> pd.DataFrame | None:
    """Valid images of the build folder that are in no tuple (never screened)."""
    build = screen_build_dir(src)
    if build is None:
        return None
    images = read_parquet(build / BUILD_IMAGES_FILE, what="images table")
    ok = images[images["status"].eq("ok") & ~images["image_id"].isin(table["image_id"])].copy()
    ok["suspicion"] = float("nan")
    return ok


def _refuse_unlisted_export(target: Path) -> None:
    """An ImageFolder export of an earlier curate did not list its files, so a new export
    could not tell them from the user's: refuse to replace it."""
    rec = target / RECORD
    if not rec.is_file():
        return
    old = read_json_file(rec, what="export record", hint="delete the folder or choose another --out")
    params = old.get("params") if isinstance(old, dict) else None
    if isinstance(old, dict) and "state" not in old and isinstance(params, dict) \
            and params.get("format") == "imagefolder":
        raise CurateError(f"--out {target} holds an ImageFolder export of an earlier curate, which did not record "
                          "the files it wrote; curate cannot replace it without risking other files there",
                          hint="delete that folder yourself, or choose another --out")


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


def plan_imagefolder(manifest: pd.DataFrame, root: Path) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Where each image goes, ``[split/]label/name`` (the ``exported`` column), and the
    label and split folder names (:func:`folder_name`). A file name taken by an earlier
    row, or by a file already in ``root``, gets the ``image_id`` as a prefix.

    String paths and one listing of ``root`` (not one ``lstat`` per image) keep a million
    images to seconds."""
    with_split = "split" in manifest.columns and manifest["split"].notna().any()
    labels = {str(v): folder_name(str(v)) for v in manifest["label"].unique()}
    splits: dict[str, str] = {}
    if with_split:
        named = {str(v) for v in manifest["split"].dropna().unique()}
        if NO_SPLIT in named and manifest["split"].isna().any():
            raise CurateError(f"the split {NO_SPLIT!r} is also the folder for images without a split",
                              hint="rename that split, or use --format csv or --format parquet")
        splits = {v: folder_name(v) for v in sorted(named)}
    taken = _entries_under(root)
    used: set[str] = set()
    written: list[str] = []
    split_values = manifest["split"].tolist() if with_split else [None] * len(manifest)
    for image_id, path, label, split in zip(manifest["image_id"].tolist(), manifest["path"].astype(str).tolist(),
                                            manifest["label"].astype(str).tolist(), split_values, strict=True):
        folder = labels[label]
        if with_split:
            folder = f"{splits[split] if isinstance(split, str) else NO_SPLIT}/{folder}"
        name = folder_name(os.path.basename(path))
        dest, k = f"{folder}/{name}", 0
        while dest in used or dest in taken:  # same file name from two source folders
            k += 1
            dest = f"{folder}/{image_id}_{name}" if k == 1 else f"{folder}/{image_id}_{k}_{name}"
        used.add(dest)
        written.append(dest)
    out = manifest.copy()
    out["exported"] = written
    return out, {"label": labels, "split": splits}


def _entries_under(root: Path) -> set[str]:
    """Every file, link and folder under ``root``, as ``/``-joined paths relative to it."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out.update(prefix + n for n in (*dirnames, *filenames))
    return out


def _write_imagefolder(manifest: pd.DataFrame, root: Path, copy: bool) -> None:
    """Link or copy each image to its ``exported`` place under ``root``: one ``mkdir`` per
    folder. The links point at the images' paths as recorded (ingest resolved them)."""
    base = str(root)
    made: set[str] = set()
    for dest, path, rel_path in zip(manifest["exported"].tolist(), manifest["path"].astype(str).tolist(),
                                    manifest["rel_path"].tolist(), strict=True):
        folder = dest.rpartition("/")[0]
        if folder not in made:
            os.makedirs(os.path.join(base, folder), exist_ok=True)
            made.add(folder)
        if not os.path.isfile(path):
            raise CurateError(f"image {rel_path} is gone: {path}",
                              hint="re-run curate build-tuples and curate screen on the current data")
        if copy:
            shutil.copy2(path, os.path.join(base, dest))
        else:
            os.symlink(path, os.path.join(base, dest))
