"""``build_tuples``: ingest a dataset, sample tuples, write the manifests atomically."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from curate.errors import CurateError
from curate.hygiene.leakage import cross_split_pairs, leakage_summary
from curate.images import DEFAULT_MAX_PIXELS
from curate.ingest import Progress, ingest
from curate.io import fingerprint_table, run_record, write_parquet
from curate.limits import seed_value, whole_number
from curate.outdir import claim_folder
from curate.tuples import Kind, TupleStats, sample_tuples

OUTPUTS = ("images.parquet", "tuples.parquet", "run.json")


@dataclass
class BuildResult:
    """What ``build_tuples`` wrote and counted."""

    out_dir: Path
    images: pd.DataFrame
    tuples: pd.DataFrame
    stats: TupleStats
    run: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    leakage: pd.DataFrame | None = None  # cross-split near-duplicate pairs (check_leakage)


def build_tuples(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    kind: Kind = "triplet",
    per_anchor: int = 1,
    max_tuples: int | None = None,
    seed: int = 0,
    balance_classes: bool = False,
    positive_subject: Literal["any", "other"] = "any",
    negative_subject: Literal["any", "same"] = "any",
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
    subject_column: str = "subject",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_leakage: bool = True,
    workers: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
    leakage_progress: Progress | None = None,
) -> BuildResult:
    """Validate every image of ``source`` and write ``images.parquet``, ``tuples.parquet``
    and ``run.json`` into ``out``.

    ``out`` follows :mod:`curate.outdir`: new, empty, or a previous build-tuples run
    (other settings need ``force``); ``run.json`` is written last and says whether the
    run completed. ``images.parquet`` is written even when no tuple can be built, so the
    statuses of all images can be inspected; the error is raised afterwards (the record
    then says ``failed``).

    With ``check_leakage`` and images in two or more splits, the valid images are searched
    for near-duplicates across splits (:func:`curate.hygiene.leakage.cross_split_pairs`;
    ``leakage_progress`` reports its decoding); the result's ``leakage`` holds the pairs and
    ``run.json``'s ``counts.leakage`` their counts and a few examples. ``curate screen``
    finds them again and lists them in its report.
    """
    started = time.time()
    seed = seed_value(seed)
    whole_number(per_anchor, "--per-anchor", lo=1)
    whole_number(
        max_pixels,
        "--max-pixels",
        lo=1,
        hint="pass --max-pixels N with N at least 1 (the largest image "
        "allowed, in pixels; the default allows 40 megapixels)",
    )
    if max_tuples is not None:
        whole_number(max_tuples, "--max-tuples", lo=1)
    if workers is not None:
        whole_number(workers, "--workers", lo=0)
    params = {
        "source": str(Path(source).expanduser().resolve()),
        "kind": kind,
        "per_anchor": per_anchor,
        "max_tuples": max_tuples,
        "seed": seed,
        "balance_classes": balance_classes,
        "positive_subject": positive_subject,
        "negative_subject": negative_subject,
        "path_column": path_column,
        "label_column": label_column,
        "split_column": split_column,
        "subject_column": subject_column,
        "max_pixels": max_pixels,
        "check_leakage": check_leakage,
    }
    with claim_folder(
        out, "build-tuples", settings=params, inputs=[source], force=force, owned=OUTPUTS
    ) as claim:
        return _build(
            claim.path, source, params, claim, started, workers, progress, leakage_progress
        )


def _build(
    out_dir: Path,
    source: str | os.PathLike[str],
    params: dict[str, Any],
    claim: Any,
    started: float,
    workers: int | None,
    progress: Progress | None,
    leakage_progress: Progress | None,
) -> BuildResult:
    images = ingest(
        source,
        path_column=params["path_column"],
        label_column=params["label_column"],
        split_column=params["split_column"],
        subject_column=params["subject_column"],
        max_pixels=params["max_pixels"],
        workers=workers,
        progress=progress,
    )
    try:
        tuples, stats = sample_tuples(
            images,
            kind=params["kind"],
            per_anchor=params["per_anchor"],
            max_tuples=params["max_tuples"],
            seed=params["seed"],
            balance_classes=params["balance_classes"],
            positive_subject=params["positive_subject"],
            negative_subject=params["negative_subject"],
        )
    except CurateError:
        # Keep the statuses for inspection (the earlier run's outputs are gone: the claim
        # removed them, and the record says this run failed).
        write_parquet(images, out_dir / "images.parquet")
        raise
    write_parquet(images, out_dir / "images.parquet")
    write_parquet(tuples, out_dir / "tuples.parquet")
    leakage = (
        cross_split_pairs(images, progress=leakage_progress) if params["check_leakage"] else None
    )
    counts = {
        "images": len(images),
        "images_ok": int(images["status"].eq("ok").sum()),
        "images_by_status": _status_counts(images),
        "tuples": len(tuples),
        **stats.to_dict(),
        "leakage": leakage_summary(leakage) if leakage is not None else None,
    }
    inputs = {
        "source": params["source"],
        "fingerprint": fingerprint_table(
            images, ["rel_path", "label", "split", "subject", "sha256", "status"]
        ),
    }
    notes = [*([claim.note] if claim.note else []), *images.attrs.get("notes", [])]
    run = run_record("build-tuples", params, inputs=inputs, counts=counts, started=started)
    if notes:
        run["notes"] = notes
    if "layout" in images.attrs:
        run["layout"] = images.attrs["layout"]  # how the folder was read, and why
    claim.finish(run)
    return BuildResult(
        out_dir=out_dir,
        images=images,
        tuples=tuples,
        stats=stats,
        run=run,
        notes=notes,
        leakage=leakage,
    )


def _status_counts(images: pd.DataFrame) -> dict[str, int]:
    """Counts per status code; all ``duplicate_of:<id>`` rows count as ``duplicate_of``."""
    codes = images["status"].str.split(":", n=1).str[0]
    return {str(k): int(v) for k, v in codes.value_counts().sort_index().items()}
