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
read directly) or as a CSV / Parquet manifest (``OUT/manifest.csv|parquet``). The
``hf`` format writes every screened image, kept or not, as a Hugging Face ``datasets``
``imagefolder`` with the screening columns in ``OUT/<split>/metadata.parquet``
(:func:`hf_columns`), which ``datasets.load_dataset`` reads offline; ``datasets`` is
not needed to write it.

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
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate import screens
from curate.decisions import Decisions, read_decisions
from curate.errors import CurateError
from curate.io import (
    LinkInOutput,
    atomic_path,
    copy_new_file,
    make_folders,
    read_json_file,
    read_parquet,
    run_record,
    write_parquet,
    write_text,
)
from curate.outdir import Claim, claim_folder, require_complete
from curate.sources import BUILD_IMAGES_FILE, screen_build_dir

FORMATS = ("imagefolder", "csv", "parquet", "hf")
MANIFEST_COLUMNS = [
    "image_id",
    "path",
    "rel_path",
    "label",
    "split",
    "suspicion",
    "suggested_label",
]
NO_SPLIT = "unsplit"
RECORD = "export.json"
MANIFESTS = ("manifest.csv", "manifest.parquet")
# kept as they are in folder and file names; every other character is %XX-encoded
_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_+,=@()[]{}!~&;#$'"
)
_PLAIN_NAME = re.compile(
    "["
    + re.escape("".join(sorted(_PLAIN)))
    + "]["
    + re.escape("".join(sorted(_PLAIN | {"."})))
    + "]*"
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
HF_DEFAULT_SPLIT = "train"  # --format hf: the split of images without one
HIGH_SUSPICION = "high_suspicion"  # --format hf: reason code for suspicion >= --max-suspicion
LEAKED = "leaked"  # --format hf: reason code of an image --drop-leaked left out
DROP_LEAKED = ("none", "test", "train")
TRAINING_SPLITS = ("train", "training")  # split names --drop-leaked takes for the training side
HF_METADATA = "metadata.parquet"  # one of the metadata files datasets' imagefolder reads
# names export writes itself (and datasets reads) beside label and split folders: a label or
# split of that name gets its first character %XX-encoded (still reversed by unquote)
RESERVED_NAMES = frozenset(
    n.lower()
    for n in (
        RECORD,
        *MANIFESTS,
        "README.md",
        HF_METADATA,
        "metadata.csv",
        "metadata.jsonl",
        "run.json",
    )
)
HF_CARD = """---
configs:
- config_name: default
  data_files:
{configs}
---
# Screened by curate

Written by `curate export --format hf`. Every screened image is here with its verdict:
`kept` (what the other export formats write), `reasons` (a list of codes: the image
screens that rejected it, and `{high}` when its label suspicion reached
`--max-suspicion`; empty when kept) and, where the label screen ran, `suspicion` (the
probability that the label is wrong) and `suggested_label`. Load it with
`datasets.load_dataset("imagefolder", data_dir=THIS_FOLDER)` or
`datasets.load_dataset(THIS_FOLDER)`, and keep the clean part with
`ds.filter(lambda r: r["kept"])`.
"""


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
    n_leaked: int | None = (
        None  # exported images with a near-duplicate exported in another split (None: not screened)
    )
    n_dropped_leaked: int = 0  # images drop_leaked left out
    decisions: dict[str, int] | None = None  # counts per curator decision (None: no --decisions)


# ``--relabel`` relabels a label suspect only when the suggested label's confidence
# (``suggested_confidence``: the out-of-fold probability of a cross-validated probe, with the
# network's head when the label screen used it, calibrated) is at least this: the lowest floor
# at which at least 85% of the relabels of FER2013 PublicTest's dev half get FERPlus's
# plurality, with the default network and its head (dev: 6.1% relabelled, 86.5% right; holdout:
# 5.1%, 82.6%). bench/quality/quality_real_photos.py; docs/label.md "Suggested labels".
RELABEL_CONFIDENCE = 0.6
RELABEL_REST = ("reject", "keep")


def relabel_gate(label_only: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Bool per image: relabel it. ``label_only``: the label screen (and no other screen)
    rejected it; ``confidence``: its ``suggested_confidence`` (NaN never passes)."""
    conf = np.asarray(confidence, dtype=np.float64)
    return (
        np.asarray(label_only, dtype=bool)
        & ~np.isnan(conf)
        & (np.nan_to_num(conf, nan=-1.0) >= threshold)
    )


def export(
    screen_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    max_suspicion: float | None = None,
    relabel: bool = False,
    relabel_confidence: float = RELABEL_CONFIDENCE,
    relabel_rest: str = "reject",
    format: str = "imagefolder",
    copy: bool = False,
    force: bool = False,
    include_unscreened: bool = False,
    drop_leaked: str = "none",
    decisions: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export the surviving images of ``screen_dir`` into ``out`` (see module doc).

    Every image an image screen rejected is left out. ``max_suspicion`` also leaves out
    images whose label ``suspicion`` (the label screen's probability that the label is
    wrong) is at least this. With ``relabel`` the images the label screen rejected (and no
    other screen) and whose ``suggested_confidence`` is at least ``relabel_confidence``
    are exported under their ``suggested_label`` instead of being left out; the manifest
    keeps the ``original_label``. The other label suspects stay left out
    (``relabel_rest="reject"``) or are kept under their own label (``"keep"``).

    Leakage: an exported image whose near-duplicate group (``near_duplicate_group``, from
    the near-duplicate screen) has another exported member in another split leaks. They are
    counted (``n_leaked``: those still exported) and, with ``drop_leaked="test"``, left out where they are not in
    the training split (the split named ``train`` or ``training``), or with ``"train"``
    left out where they are in it (:func:`leaked_images`).

    ``decisions``: a curator's ``decisions.csv`` (the report's review view downloads it;
    :func:`curate.decisions.read_decisions` checks it): ``keep`` exports an image whatever
    the screens and ``max_suspicion`` said, ``drop`` leaves it out, ``relabel`` exports it
    under the new label (the manifest keeps ``original_label`` and gains ``decision``);
    every other image follows the screens. ``drop_leaked`` still applies afterwards. The
    file's sha256 and the counts per decision go into ``export.json``.

    ``out`` must be new, empty, or an earlier export: the same settings re-export, other
    settings need ``force``; only the files an earlier export wrote are replaced (a
    folder that holds anything but a curate export is never touched).
    """
    started = time.time()
    _check_options(format, drop_leaked, relabel_confidence, relabel_rest, max_suspicion)
    src = Path(screen_dir).expanduser()
    require_complete(src, what="screen folder")
    table = read_parquet(src / "images_suspect.parquet", what="suspect-images table")
    verdicts = screen_verdicts(
        table,
        max_suspicion=max_suspicion,
        relabel=relabel,
        relabel_confidence=relabel_confidence,
        relabel_rest=relabel_rest,
        where=src / "images_suspect.parquet",
    )
    keep = verdicts.kept()
    review = read_decisions(decisions, table) if decisions is not None else None
    decided = _decision_column(table, review)
    if review is not None:
        keep = (keep | np.isin(decided, ("keep", "relabel"))) & (decided != "drop")
    leaked = leaked_images(table, keep)
    dropped = _drop_leaked(table, leaked, drop_leaked, src)
    keep &= ~dropped
    leaked = leaked_images(table, keep)  # what still leaks in the export
    table, relabelled = _relabel(table, verdicts.relabelled, relabel, review, decided)
    manifest, n_unscreened = _manifest(
        src,
        table,
        keep,
        verdicts,
        dropped,
        format=format,
        original_label=relabel or review is not None,
        decision=review is not None,
        include_unscreened=include_unscreened,
    )
    n_exported = len(manifest)

    _refuse_unlisted_export(Path(out).expanduser())
    settings = _settings(
        src,
        max_suspicion=max_suspicion,
        relabel=relabel,
        relabel_confidence=relabel_confidence,
        relabel_rest=relabel_rest,
        format=format,
        copy=copy,
        include_unscreened=include_unscreened,
        drop_leaked=drop_leaked,
        review=review,
    )
    with claim_folder(
        out,
        "export",
        settings=settings,
        inputs=[src, screen_build_dir(src)],
        force=force,
        owned=MANIFESTS,
    ) as claim:
        target = claim.path
        manifest, folders, files = _write_export(manifest, target, format, copy, claim)
        counts = _counts(
            len(table),
            n_exported,
            keep,
            verdicts,
            relabelled,
            n_unscreened,
            leaked,
            dropped,
            review,
            decided,
        )
        inputs = {"screen_dir": str(src.resolve())}
        if review is not None:
            inputs |= {
                "decisions": str(Path(review.source).resolve()),
                "decisions_sha256": review.sha256,
            }
        claim.finish(
            run_record(
                "export",
                {**settings, "force": force},
                inputs=inputs,
                counts=counts,
                started=started,
            ),
            files=files,
            folders=folders,
        )
    return _result(target, manifest, n_exported, counts, n_unscreened, folders, claim.note)


def _settings(
    src: Path,
    *,
    max_suspicion: float | None,
    relabel: bool,
    relabel_confidence: float,
    relabel_rest: str,
    format: str,
    copy: bool,
    include_unscreened: bool,
    drop_leaked: str,
    review: Decisions | None,
) -> dict[str, Any]:
    """The export's settings as recorded in export.json (the same settings re-export)."""
    return {
        "screen_dir": str(src.resolve()),
        "max_suspicion": max_suspicion,
        "relabel": relabel,
        "relabel_confidence": relabel_confidence if relabel else None,
        "relabel_rest": relabel_rest if relabel else None,
        "format": format,
        "copy": copy,
        "include_unscreened": include_unscreened,
        "drop_leaked": drop_leaked,
        "decisions": None if review is None else review.source,
        "decisions_sha256": None if review is None else review.sha256,
    }


def _result(
    target: Path,
    manifest: pd.DataFrame,
    n_exported: int,
    counts: dict[str, Any],
    n_unscreened: int | None,
    folders: dict[str, dict[str, str]],
    claim_note: str | None,
) -> ExportResult:
    """The :class:`ExportResult` of a finished export."""
    per_label = {str(k): int(v) for k, v in manifest["label"].value_counts().sort_index().items()}
    return ExportResult(
        out_dir=target,
        target=target,
        n_exported=n_exported,
        n_excluded=counts["excluded"],
        n_suspect=counts["suspect"],
        n_face_rejected=counts["face_rejected"],
        n_image_rejected=counts["image_rejected_by_screen"],
        n_relabelled=counts["relabelled"],
        n_unscreened=n_unscreened,
        per_label=per_label,
        manifest=manifest,
        n_leaked=counts["leaked"],
        n_dropped_leaked=counts["dropped_leaked"],
        folders=folders,
        notes=[claim_note] if claim_note else [],
        decisions=counts.get("decisions"),
    )


def _manifest(
    src: Path,
    table: pd.DataFrame,
    keep: np.ndarray,
    verdicts: Verdicts,
    dropped: np.ndarray,
    *,
    format: str,
    original_label: bool,
    decision: bool,
    include_unscreened: bool,
) -> tuple[pd.DataFrame, int | None]:
    """The export's manifest, by ``image_id`` (``hf``: every screened image with its
    verdict; else the kept ones; the build's unscreened images added with
    ``include_unscreened``), and how many images the build holds that were not screened
    (None when the build's table is not there)."""
    cols = (
        MANIFEST_COLUMNS
        + (["original_label"] if original_label else [])
        + (["decision"] if decision else [])
    )
    if format == "hf":  # every screened image, with its verdict in the screening columns
        manifest = hf_columns(
            table,
            [c for c in cols if c in table.columns],
            keep,
            verdicts.suspect,
            verdicts.rejected_by,
            dropped,
        )
    else:
        manifest = table.loc[keep, [c for c in cols if c in table.columns]]
    unscreened = _unscreened_images(src, table)
    if include_unscreened and unscreened is not None and len(unscreened):
        manifest = _with_unscreened(manifest, unscreened, format)
    n_unscreened = None if unscreened is None else len(unscreened)
    return manifest.sort_values("image_id", kind="mergesort").reset_index(drop=True), n_unscreened


def _counts(
    n_images: int,
    n_exported: int,
    keep: np.ndarray,
    verdicts: Verdicts,
    relabelled: np.ndarray,
    n_unscreened: int | None,
    leaked: np.ndarray | None,
    dropped: np.ndarray,
    review: Decisions | None,
    decided: np.ndarray,
) -> dict[str, Any]:
    """``export.json``'s counts (``keep``: the rows exported)."""
    counts: dict[str, Any] = {
        "images": n_images,
        "exported": n_exported,
        "excluded": int((~keep).sum()),
        "suspect": int(verdicts.suspect.sum()),
        "face_rejected": int(verdicts.face_bad.sum()),
        "image_rejected_by_screen": {k: int(v.sum()) for k, v in verdicts.rejected_by.items()},
        "relabelled": int((relabelled & keep).sum()),
        "label_suspects_kept_unrelabelled": int((verdicts.kept_rest & keep).sum()),
        "unscreened": n_unscreened,
        "leaked": None if leaked is None else int(leaked.sum()),
        "dropped_leaked": int(dropped.sum()),
    }
    if review is not None:
        screens_kept = verdicts.kept()
        counts["decisions"] = {
            **review.counts,
            "kept_against_screens": int(((decided == "keep") & ~screens_kept).sum()),
            "dropped_against_screens": int(((decided == "drop") & screens_kept).sum()),
        }
    return counts


def _check_options(
    format: str,
    drop_leaked: str,
    relabel_confidence: float,
    relabel_rest: str,
    max_suspicion: float | None,
) -> None:
    """Raise :class:`CurateError` naming the first of :func:`export`'s settings out of range."""
    if format not in FORMATS:
        raise CurateError(
            f"unknown export format {format!r}", hint=f"use --format one of {', '.join(FORMATS)}"
        )
    if drop_leaked not in DROP_LEAKED:
        raise CurateError(
            f"--drop-leaked must be one of {', '.join(DROP_LEAKED)}, got {drop_leaked!r}",
            hint="use --drop-leaked test (leave the evaluation copies out) or none",
        )
    if not (isinstance(relabel_confidence, (int, float)) and 0 <= relabel_confidence <= 1):
        raise CurateError(
            f"--relabel-confidence must be in [0, 1], got {relabel_confidence!r}",
            hint=f"for example --relabel-confidence {RELABEL_CONFIDENCE}",
        )
    if relabel_rest not in RELABEL_REST:
        raise CurateError(
            f"--relabel-rest must be one of {', '.join(RELABEL_REST)}, got {relabel_rest!r}",
            hint="use --relabel-rest reject (leave them out) or keep (keep their label)",
        )
    if max_suspicion is not None and not 0 < max_suspicion <= 1:
        raise CurateError(
            f"--max-suspicion must be in (0, 1], got {max_suspicion}",
            hint="for example --max-suspicion 0.5",
        )


@dataclass
class Verdicts:
    """Per row of the suspect-images table: what the screens decided, before the curator's
    decisions and leakage (:func:`screen_verdicts`)."""

    suspect: np.ndarray  # label suspicion at least max_suspicion
    rejected_by: dict[
        str, np.ndarray
    ]  # per image screen: rejected (label: less the relabelled and kept ones)
    relabelled: np.ndarray  # exported under suggested_label (relabel)
    kept_rest: np.ndarray  # label suspects kept under their own label (relabel_rest="keep")

    @property
    def image_bad(self) -> np.ndarray:
        """Rejected by any image screen."""
        return np.logical_or.reduce(
            [*self.rejected_by.values(), np.zeros(len(self.suspect), dtype=bool)]
        )

    @property
    def face_bad(self) -> np.ndarray:
        """Rejected by the face screen."""
        return self.rejected_by.get("faces", np.zeros(len(self.suspect), dtype=bool))

    def kept(self) -> np.ndarray:
        """What the screens keep: neither suspect nor rejected by an image screen."""
        return ~self.suspect & ~self.image_bad


def screen_verdicts(
    table: pd.DataFrame,
    *,
    max_suspicion: float | None = None,
    relabel: bool = False,
    relabel_confidence: float = RELABEL_CONFIDENCE,
    relabel_rest: str = "reject",
    where: Path | str = "images_suspect.parquet",
) -> Verdicts:
    """The screens' verdicts on ``table`` (a suspect-images table) under :func:`export`'s
    ``max_suspicion`` and ``relabel`` settings; ``where`` names the table in errors."""
    if (max_suspicion is not None or relabel) and "suspicion" not in table.columns:
        raise CurateError(
            f"{where} has no label suspicion (the label screen did not run)",
            hint="re-run curate screen without --skip-label-screen, "
            "or drop --max-suspicion / --relabel",
        )
    suspect = np.zeros(len(table), dtype=bool)
    if max_suspicion is not None:
        suspect = (
            pd.to_numeric(table["suspicion"], errors="coerce").fillna(0).to_numpy() >= max_suspicion
        )
    rejected_by = image_rejects(table)
    relabelled = np.zeros(len(table), dtype=bool)
    kept_rest = np.zeros(len(table), dtype=bool)
    if relabel and "label" in rejected_by:
        if "suggested_confidence" not in table.columns and relabel_confidence > 0:
            raise CurateError(
                f"{where} has no suggested_confidence (screened by an older curate)",
                hint="re-run curate screen, or pass --relabel-confidence 0 "
                "to relabel every label suspect",
            )
        others = [v for k, v in rejected_by.items() if k != "label"]
        label_only = rejected_by["label"] & ~np.logical_or.reduce([*others, relabelled])
        conf = (
            pd.to_numeric(table["suggested_confidence"], errors="coerce").to_numpy(np.float64)
            if "suggested_confidence" in table.columns
            else np.ones(len(table))
        )
        relabelled = relabel_gate(label_only, conf, relabel_confidence)
        if relabel_rest == "keep":
            kept_rest = label_only & ~relabelled
        rejected_by = {**rejected_by, "label": rejected_by["label"] & ~relabelled & ~kept_rest}
    return Verdicts(
        suspect=suspect, rejected_by=rejected_by, relabelled=relabelled, kept_rest=kept_rest
    )


def _relabel(
    table: pd.DataFrame,
    relabelled: np.ndarray,
    relabel: bool,
    review: Decisions | None,
    decided: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """A copy of ``table`` with the exported labels (``relabelled`` rows under their
    ``suggested_label`` unless the curator decided, the curator's relabels), the
    ``original_label`` and ``decision`` columns where they apply, and the rows relabelled."""
    table = table.copy()
    if relabel or review is not None:
        table["original_label"] = table["label"]
    if relabel:
        table.loc[relabelled & (decided == ""), "label"] = table.loc[
            relabelled & (decided == ""), "suggested_label"
        ]
    if review is not None:
        relabels = review.relabels()
        table["label"] = table["label"].astype(object)
        for i in np.flatnonzero(decided == "relabel"):
            table.iat[i, table.columns.get_loc("label")] = relabels[int(table["image_id"].iat[i])]
        table["decision"] = decided
        relabelled = (relabelled & (decided == "")) | (decided == "relabel")
    return table, relabelled


def _with_unscreened(manifest: pd.DataFrame, unscreened: pd.DataFrame, format: str) -> pd.DataFrame:
    """``manifest`` followed by the ``unscreened`` images (kept as they are labelled)."""
    extra = unscreened[[c for c in MANIFEST_COLUMNS if c in unscreened.columns]]
    if format == "hf":
        extra = extra.assign(kept=True, reasons="")
    if "original_label" in manifest.columns:
        extra = extra.assign(original_label=extra["label"])
    if "decision" in manifest.columns:
        extra = extra.assign(decision="")
    return pd.concat([manifest, extra], ignore_index=True)


def _write_export(
    manifest: pd.DataFrame, target: Path, format: str, copy: bool, claim: Claim
) -> tuple[pd.DataFrame, dict[str, dict[str, str]], list[str]]:
    """Write ``manifest`` into ``target`` in ``format``: the manifest (with ``exported``
    paths for the folder formats), the label/split folder names and the files written."""
    folders: dict[str, dict[str, str]] = {}
    if format == "imagefolder":
        manifest, folders = plan_imagefolder(manifest, target)
        files = manifest["exported"].tolist()
        claim.will_write(files)
        _write_imagefolder(manifest, target, copy)
    elif format == "hf":
        manifest, folders, files = _write_hf(manifest, target, copy, claim)
    elif format == "csv":
        files = ["manifest.csv"]
        with atomic_path(target / "manifest.csv") as tmp:
            csv_safe(manifest).to_csv(tmp, index=False)
    else:
        files = ["manifest.parquet"]
        write_parquet(manifest, target / "manifest.parquet")
    return manifest, folders, files


def _decision_column(table: pd.DataFrame, review: Decisions | None) -> np.ndarray:
    """Per row of ``table``: the curator's decision (``keep``, ``drop``, ``relabel``) or ``""``."""
    out = np.full(len(table), "", dtype=object)
    if review is not None:
        by_id = dict(
            zip(review.table["image_id"].tolist(), review.table["decision"].tolist(), strict=True)
        )
        out[:] = [by_id.get(int(i), "") for i in table["image_id"].tolist()]
    return out


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or
    a carriage return prefixed by ``'``: spreadsheets then show the cell as text instead
    of running it as a formula (CSV injection). Numbers are left alone."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    return out


def folder_name(part: str) -> str:
    """The folder (or file) name of a label, split or file name: plain characters as they
    are, every other one (and a leading ``.``) as ``%XX`` of its UTF-8 bytes. Injective,
    reversed by ``urllib.parse.unquote``, never hidden, never empty."""
    if (
        _PLAIN_NAME.fullmatch(part) and len(part) <= 255
    ):  # the usual case, without a loop per character
        return part
    out = []
    for i, ch in enumerate(part):
        if (
            ch in _PLAIN
            or (ch == "." and i > 0)
            or (ord(ch) > 127 and unicodedata.category(ch)[0] in "LN")
        ):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
    name = "".join(out)
    if not name:
        raise CurateError(
            "an empty label or split cannot be a folder name",
            hint="use --format csv or --format parquet",
        )
    if len(name.encode("utf-8")) > 255:
        raise CurateError(
            f"label, split or file name {part[:60]!r}... is too long for a folder or file name "
            f"({len(name.encode('utf-8'))} bytes encoded, at most 255)",
            hint="use --format csv or --format parquet",
        )
    return name


def unreserved(name: str) -> str:
    """``name``, or with its first character ``%XX``-encoded when it is one of the files
    export writes itself (:data:`RESERVED_NAMES`: ``export.json``, ``metadata.parquet``,
    ...), so a label never takes the place of export's own files."""
    if name.lower() not in RESERVED_NAMES:
        return name
    return "".join(f"%{b:02X}" for b in name[0].encode("utf-8")) + name[1:]


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
    old = read_json_file(
        rec, what="export record", hint="delete the folder or choose another --out"
    )
    params = old.get("params") if isinstance(old, dict) else None
    if (
        isinstance(old, dict)
        and "state" not in old
        and isinstance(params, dict)
        and params.get("format") == "imagefolder"
    ):
        raise CurateError(
            f"--out {target} holds an ImageFolder export of an earlier curate, which did not record "
            "the files it wrote; curate cannot replace it without risking other files there",
            hint="delete that folder yourself, or choose another --out",
        )


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


def leaked_images(table: pd.DataFrame, keep: np.ndarray) -> np.ndarray | None:
    """Per row of ``images_suspect.parquet``: a kept image whose near-duplicate group has
    another kept member in another split. None when the near-duplicate screen did not run."""
    if "near_duplicate_group" not in table.columns:
        return None
    group = (
        pd.to_numeric(table["near_duplicate_group"], errors="coerce").fillna(-1).to_numpy(np.int64)
    )
    split = (
        table["split"].astype(object).fillna("\0").to_numpy()
        if "split" in table.columns
        else np.full(len(table), "\0", dtype=object)
    )
    live = keep & (group >= 0)
    n_splits = pd.Series(split[live]).groupby(group[live]).nunique()
    out = np.zeros(len(table), bool)
    out[live] = n_splits.reindex(group[live]).to_numpy() > 1
    return out


def _drop_leaked(
    table: pd.DataFrame, leaked: np.ndarray | None, side: str, src: Path
) -> np.ndarray:
    """The rows ``--drop-leaked side`` leaves out (see :func:`export`)."""
    none = np.zeros(len(table), bool)
    if side == "none":
        return none
    if leaked is None:
        raise CurateError(
            f"{src} has no near-duplicate verdicts (the near-duplicate screen did not run)",
            hint="re-run curate screen without --skip-near-duplicates-screen, or leave out --drop-leaked",
        )
    split = (
        table["split"].astype("string")
        if "split" in table.columns
        else pd.Series(pd.NA, index=table.index)
    )
    names = sorted(str(v) for v in split.dropna().unique())
    training = [n for n in names if n.strip().lower() in TRAINING_SPLITS]
    if leaked.any() and len(training) != 1:
        raise CurateError(
            f"--drop-leaked {side} needs one training split named {' or '.join(TRAINING_SPLITS)}; "
            f"the splits are {', '.join(names) or '(none)'}",
            hint="rename the training split in the manifest, or leave out --drop-leaked",
        )
    in_train = (split == training[0]).fillna(False).to_numpy(bool) if training else none
    return leaked & (~in_train if side == "test" else in_train)


def plan_imagefolder(
    manifest: pd.DataFrame, root: Path
) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Where each image goes, ``[split/]label/name`` (the ``exported`` column), and the
    label and split folder names (:func:`folder_name`). A file name taken by an earlier
    row, or by a file already in ``root``, gets the ``image_id`` as a prefix.

    String paths and one listing of ``root`` (not one ``lstat`` per image) keep a million
    images to seconds."""
    with_split = "split" in manifest.columns and manifest["split"].notna().any()
    labels = {str(v): unreserved(folder_name(str(v))) for v in manifest["label"].unique()}
    splits: dict[str, str] = {}
    if with_split:
        named = {str(v) for v in manifest["split"].dropna().unique()}
        if NO_SPLIT in named and manifest["split"].isna().any():
            raise CurateError(
                f"the split {NO_SPLIT!r} is also the folder for images without a split",
                hint="rename that split, or use --format csv or --format parquet",
            )
        splits = {v: unreserved(folder_name(v)) for v in sorted(named)}
    taken = _entries_under(root)
    used: set[str] = set()
    written: list[str] = []
    split_values = manifest["split"].tolist() if with_split else [None] * len(manifest)
    for image_id, path, label, split in zip(
        manifest["image_id"].tolist(),
        manifest["path"].astype(str).tolist(),
        manifest["label"].astype(str).tolist(),
        split_values,
        strict=True,
    ):
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
    try:
        for dest, path, rel_path in zip(
            manifest["exported"].tolist(),
            manifest["path"].astype(str).tolist(),
            manifest["rel_path"].tolist(),
            strict=True,
        ):
            folder = dest.rpartition("/")[0]
            if folder not in made:
                make_folders(base, folder)  # never through a link: nothing is written outside root
                made.add(folder)
            if not os.path.isfile(path):
                raise CurateError(
                    f"image {rel_path} is gone: {path}",
                    hint="re-run curate build-tuples and curate screen on the current data",
                )
            if copy:
                copy_new_file(path, os.path.join(base, dest))
            else:
                os.symlink(path, os.path.join(base, dest))
    except LinkInOutput as exc:
        raise CurateError(
            f"{exc.strerror} inside --out {root}; curate never writes through a link, so nothing "
            "was written outside --out",
            hint="remove it (or choose another --out), then export again",
        ) from None
    except FileExistsError as exc:
        raise CurateError(
            f"{exc.filename} appeared inside --out {root} while exporting",
            hint="run the export again; keep other programs out of --out meanwhile",
        ) from None


def hf_columns(
    table: pd.DataFrame,
    columns: list[str],
    keep: np.ndarray,
    suspect: np.ndarray,
    rejected_by: dict[str, np.ndarray],
    dropped: np.ndarray | None = None,
) -> pd.DataFrame:
    """The rows of ``--format hf``: every screened image with ``columns`` of ``table``,
    ``kept`` (what the other formats export) and ``reasons`` (``;``-joined here, a list
    in the dataset: the codes of the image screens that rejected it, and
    :data:`HIGH_SUSPICION` when its label suspicion is at least ``max_suspicion``,
    :data:`LEAKED` when ``--drop-leaked`` left it out; empty when kept)."""
    out = table[columns].copy()
    out["kept"] = keep
    codes: list[list[str]] = [[] for _ in range(len(out))]
    for s in screens.registered():
        col = s.columns()[2]
        if s.level == "image" and col in table.columns and s.name in rejected_by:
            for i in np.flatnonzero(rejected_by[s.name]):
                r = table[col].iloc[i]
                codes[i] += r.split(";") if isinstance(r, str) and r else [s.codes[0]]
    for i in np.flatnonzero(suspect):
        codes[i].append(HIGH_SUSPICION)
    for i in np.flatnonzero(dropped if dropped is not None else []):
        codes[i].append(LEAKED)
    out["reasons"] = [";".join(c) for c in codes]
    return out


def _write_hf(
    manifest: pd.DataFrame, root: Path, copy: bool, claim: Claim
) -> tuple[pd.DataFrame, dict[str, dict[str, str]], list[str]]:
    """A Hugging Face ``imagefolder`` dataset: ``root/<split>/<label>/<file>`` (links or
    copies, named as :func:`plan_imagefolder` names them), one
    ``root/<split>/metadata.parquet`` per split (``file_name`` relative to it, then the
    columns of :func:`hf_columns`, ``reasons`` as a list of codes; Parquet keeps the
    types, so ``kept`` is a bool and ``reasons`` a list of strings even when every image
    passed) and a ``README.md`` whose ``configs`` name the splits, so
    ``datasets.load_dataset(str(root))`` reads it offline. Images without a split go to
    ``train``; in other split names every character but letters, digits and ``_``
    becomes ``_`` (a split name of ``datasets``). Returns the placed rows, the folder
    names and the files written."""
    split = (
        manifest["split"] if "split" in manifest.columns else pd.Series(None, index=manifest.index)
    )
    names = split.map(
        lambda v: re.sub(r"\W", "_", v) if isinstance(v, str) and v.strip() else HF_DEFAULT_SPLIT
    )
    merged = pd.DataFrame({"split": split.astype("string"), "name": names}).drop_duplicates()
    clash = merged[merged["name"].duplicated(keep=False)]
    if len(clash):
        raise CurateError(
            f"the splits {sorted(clash['split'].dropna().astype(str))} would share the "
            f"dataset split {clash['name'].iloc[0]!r}",
            hint="rename them, or use --format parquet",
        )
    placed, folders = plan_imagefolder(manifest.assign(split=names.to_numpy()), root)
    placed["split"] = manifest["split"].to_numpy() if "split" in manifest.columns else None
    splits = sorted(names.unique())
    files = [*placed["exported"], *[f"{n}/{HF_METADATA}" for n in splits], "README.md"]
    claim.will_write(files)
    _write_imagefolder(placed, root, copy)
    configs = []
    for name in splits:
        rows = placed[(names == name).to_numpy()]
        meta = rows.drop(columns=["path", "rel_path", "exported", "split"], errors="ignore")
        meta.insert(
            0, "file_name", [Path(e).relative_to(name).as_posix() for e in rows["exported"]]
        )
        meta["reasons"] = [r.split(";") if r else [] for r in meta["reasons"]]
        write_parquet(meta, root / name / HF_METADATA)
        configs.append(f'  - split: {name}\n    path: "{name}/**"')
    write_text(HF_CARD.format(configs="\n".join(configs), high=HIGH_SUSPICION), root / "README.md")
    return placed, folders, files
