"""``curate evaluate`` and ``curate predict``: a fine-tuning run applied to images.

:func:`evaluate` measures accuracy, per-class accuracy, macro F1 and the confusion
matrix on a labelled split; :func:`predict` returns the predicted expression and the
class probabilities of each image.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from curate.backbone import autocast_precision, resolve_device
from curate.errors import CurateError
from curate.ingest import ingest, validate_file
from curate.io import read_parquet
from curate.limits import check_batch_memory, whole_number
from curate.models import resolve_run
from curate.outdir import require_complete
from curate.runs import EmbeddingNet, load_run
from curate.sources import (
    BUILD_IMAGES_FILE,
    IMAGE_SUFFIXES,
    images_build_dir,
    not_found_hint,
    source_kind,
    walk_files,
)
from curate.train.data import ImageStore, to_model_input
from curate.train.framing import run_boxes

MAX_BATCH = 65_536  # images per forward pass
DUPLICATES_SKIPPED = "duplicate"  # key of EvaluationResult.skipped: copies evaluated once
BAD_STATUSES = (
    "missing",
    "unreadable",
    "empty_file",
    "not_an_image",
    "corrupt",
    "too_large",
    "no_label",
    "not_a_file",
    "bad_name",
)

Progress = Callable[[str, int, int], None]


@torch.inference_mode()
def embed_and_classify(
    net: EmbeddingNet,
    store: ImageStore,
    rows: np.ndarray,
    data_config: dict[str, Any],
    *,
    device: torch.device,
    batch_size: int = 256,
    amp: bool | None = True,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``[n, d]`` and class probabilities ``[n, C]`` (float32) of store rows.

    ``amp``: bfloat16 autocast where :func:`curate.backbone.autocast_precision` allows it
    (CUDA, or a CPU with native bfloat16); None: on CUDA only (float32 on every CPU)."""
    was_training = net.training
    net.eval()
    embs, probs = [], []
    use_amp = autocast_precision(device, device.type == "cuda" if amp is None else amp)[0]
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            x = to_model_input(store.get(chunk).to(device, non_blocking=True), data_config)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                emb = net(x)
                logits = net.logits_from_embeddings(emb)
            embs.append(emb.float().cpu().numpy())
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            if progress is not None:
                progress("predict", min(start + batch_size, len(rows)), len(rows))
    finally:
        net.train(was_training)
    if not embs:
        return np.zeros((0, net.embed_dim), np.float32), np.zeros(
            (0, net.classifier.out_features), np.float32
        )
    return np.concatenate(embs), np.concatenate(probs)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro F1, per-class accuracy (recall), precision, F1 and confusion matrix.

    ``y_true`` and ``y_pred`` are class indices into ``classes``. Macro F1 averages the
    F1 of the classes present in ``y_true`` or ``y_pred`` (as scikit-learn does with
    ``labels`` unset); a class with no true and no predicted image is left out.
    """
    k = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0
    )
    present = (support > 0) | (predicted > 0)
    n = int(len(y_true))
    per_class = [
        {
            "class": c,
            "n": int(support[i]),
            "accuracy": float(recall[i]) if support[i] else None,
            "precision": float(precision[i]) if predicted[i] else None,
            "f1": float(f1[i]),
        }
        for i, c in enumerate(classes)
    ]
    return {
        "n_images": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": per_class,
        "classes": list(classes),
        "confusion": cm.tolist(),
    }


# ----------------------------------------------------------------------------- evaluate


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured; :meth:`to_dict` is its JSON."""

    run: str
    source: str
    split: str | None
    metrics: dict[str, Any]
    predictions: pd.DataFrame = field(repr=False)
    skipped: dict[str, int] = field(default_factory=dict)
    precision: str = "float32"
    framing: str = "full"  # face: the faces were cut out around their landmarks

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "run": self.run,
            "source": self.source,
            "split": self.split,
            "skipped": self.skipped,
            "precision": self.precision,
            "framing": self.framing,
            **self.metrics,
        }


def read_labelled_source(
    source: str | Path, *, split: str | None = None
) -> tuple[pd.DataFrame, int]:
    """The labelled images of a folder, CSV/Parquet manifest, build-tuples folder or screen
    output folder (the images of the build it screened).

    Returns the ``ok`` rows of the images table (``path``, ``label``, ``split``, ...),
    optionally restricted to ``split``, and the number of rows left out as duplicates
    (a byte-identical copy or a repeated manifest row is evaluated once). Images that
    are missing, unreadable or have no label are a :class:`CurateError`.
    """
    src = Path(source)
    hint = "pass a class-per-folder image folder, a CSV/Parquet manifest, or a build-tuples folder"
    kind = source_kind(src, hint=hint)
    build = images_build_dir(src, kind)
    if kind == "run" or (kind == "screen" and build is None):
        raise CurateError(f"{src} is a curate {kind} folder, not labelled images", hint=hint)
    if build is not None:
        require_complete(build, what="build folder")
        images = read_parquet(build / BUILD_IMAGES_FILE, what="images table")
    else:
        images = ingest(src)
    if split is not None:
        if "split" not in images.columns or not (images["split"] == split).any():
            have = sorted(images["split"].dropna().unique()) if "split" in images.columns else []
            raise CurateError(
                f"{src} has no images of split {split!r} (splits: {have or 'none'})",
                hint="pass --split with one of those, or leave it out",
            )
        images = images[images["split"] == split]
    bad = images[images["status"].isin(BAD_STATUSES)]
    if len(bad):
        row = bad.iloc[0]
        raise CurateError(
            f"{len(bad)} image(s) of {src} cannot be evaluated, e.g. {row['path']}: {row['status']}"
            + (f" ({row['detail']})" if isinstance(row.get("detail"), str) else ""),
            hint="fix or remove those files / manifest rows",
        )
    ok = images[images["status"] == "ok"].reset_index(drop=True)
    if ok.empty:
        raise CurateError(
            f"{src} holds no usable labelled image", hint="check the folder layout or the manifest"
        )
    status = images["status"].astype(str)
    return ok, int((status.str.startswith("duplicate_of:") | status.eq("duplicate_row")).sum())


def evaluate(
    run: str | Path,
    source: str | Path,
    *,
    split: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    skip_unknown_classes: bool = False,
    amp: bool | None = None,
    progress: Progress | None = None,
    framing: str = "auto",
) -> EvaluationResult:
    """Evaluate a fine-tuning run (a run folder, or a bundled model's name) on a labelled split.

    A label in ``source`` that the run was not trained on is a :class:`CurateError`,
    unless ``skip_unknown_classes`` (then those images are left out and counted).
    Duplicates (byte-identical copies, repeated manifest rows) are evaluated once and
    counted in ``skipped["duplicate"]``. ``amp``: bfloat16 autocast where the device supports
    it (:func:`curate.backbone.autocast_precision`); None (default): on CUDA only, so CPU
    figures are float32 and reproducible on every CPU. ``framing``: ``auto`` cuts the faces
    out around their landmarks where the run trained so (its ``config.json``), ``face`` or
    ``full`` whatever it did (:mod:`curate.train.framing`).
    """
    batch_size = whole_number(batch_size, "--batch-size", lo=1, hi=MAX_BATCH)
    net, cfg = load_run(resolve_run(run))
    classes = list(cfg["classes"])
    images, n_dup = read_labelled_source(source, split=split)
    _check_batch(batch_size, len(images), cfg)
    skipped: dict[str, int] = {}
    if n_dup:
        skipped[DUPLICATES_SKIPPED] = n_dup
    labels = images["label"].astype(str)
    unknown = labels[~labels.isin(classes)]
    if len(unknown):
        counts = unknown.value_counts().to_dict()
        if not skip_unknown_classes:
            raise CurateError(
                f"{source} has classes the run was not trained on: "
                + ", ".join(f"{k!r} ({v} images)" for k, v in sorted(counts.items()))
                + f"; the run knows {classes}",
                hint="evaluate on a split with the training classes, or pass --skip-unknown-classes",
            )
        skipped.update({f"unknown_class:{k}": int(v) for k, v in counts.items()})
        images = images[labels.isin(classes)].reset_index(drop=True)
        labels = images["label"].astype(str)
    dev = resolve_device(device)
    net = net.to(dev)
    boxes, framed = run_boxes(cfg, images["path"].tolist(), progress, framing)
    store = ImageStore(images["path"].tolist(), cfg["data_config"], progress=progress, boxes=boxes)
    use_amp, precision = autocast_precision(dev, dev.type == "cuda" if amp is None else amp)
    _, probs = embed_and_classify(
        net,
        store,
        np.arange(len(images)),
        cfg["data_config"],
        device=dev,
        batch_size=batch_size,
        amp=use_amp,
        progress=progress,
    )
    index = {c: i for i, c in enumerate(classes)}
    y_true = labels.map(index).to_numpy()
    y_pred = probs.argmax(axis=1)
    metrics = classification_metrics(y_true, y_pred, classes)
    preds = pd.DataFrame(
        {
            "path": images["path"],
            "label": labels,
            "prediction": [classes[i] for i in y_pred],
            "confidence": probs.max(axis=1).astype(np.float64),
        }
    )
    return EvaluationResult(
        run=str(run),
        source=str(source),
        split=split,
        metrics=metrics,
        predictions=preds,
        skipped=skipped,
        precision=precision,
        framing=framed,
    )


# ----------------------------------------------------------------------------- predict


def _check_batch(batch_size: int, n_images: int, cfg: dict[str, Any]) -> None:
    """Refuse a batch (``--batch-size``, at most the images to do) whose inputs and
    activations would not fit in memory at the run's input size."""
    size = cfg["data_config"]["input_size"]
    check_batch_memory(
        min(batch_size, max(n_images, 1)),
        size,
        f"--batch-size {batch_size} at the run's input size {size}",
        hint="lower --batch-size",
    )


def expand_inputs(inputs: Sequence[str | Path]) -> list[str]:
    """Image files named by paths, folders (searched recursively) and glob patterns, in order,
    without repeats. A name that matches nothing is a :class:`CurateError`. One path
    given as a string (or ``Path``) is one input, never a sequence of characters."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [os.fsdecode(inputs)]
    out: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            out.append(str(p))

    for item in inputs:
        s = str(item)
        p = Path(s).expanduser()
        if p.is_dir():
            files = walk_files(p, IMAGE_SUFFIXES)
            if not files:
                raise CurateError(
                    f"folder {p} holds no image file",
                    hint=f"image types: {' '.join(IMAGE_SUFFIXES)}",
                )
            for f in files:
                add(f)
        elif p.is_file() or (os.path.lexists(p) and not p.is_dir()):
            add(
                p
            )  # a FIFO, a device or a broken link is listed too: predict records why it cannot be read
        elif glob.has_magic(s):
            matches = sorted(
                m for m in glob.glob(os.path.expanduser(s), recursive=True) if Path(m).is_file()
            )
            if not matches:
                raise CurateError(
                    f"the pattern {s!r} matches no file",
                    hint="check the pattern (quote it in the shell)",
                )
            for m in matches:
                add(Path(m))
        else:
            raise CurateError(
                f"image not found: {s}",
                hint=not_found_hint(s, "pass image files, folders or glob patterns"),
            )
    return out


def predict(
    run: str | Path,
    inputs: Sequence[str | Path],
    *,
    device: str = "auto",
    batch_size: int = 256,
    faces: bool = False,
    amp: bool | None = None,
    progress: Progress | None = None,
    framing: str = "auto",
) -> pd.DataFrame:
    """Predicted expression and class probabilities for each image.

    Columns: ``path``, ``status`` (``ok`` or the reason code of ``images.parquet``:
    ``missing``, ``not_a_file``, ``corrupt``, ...), ``detail``, ``prediction``,
    ``confidence``, then ``p_<class>`` per class (``amp`` as in :func:`evaluate`); an image that cannot be read keeps its
    row with its status and no prediction, and the others are predicted. With
    ``faces=True`` also the face-screen columns of :mod:`curate.faces`; ``framing`` as in
    :func:`evaluate` (what was used: ``table.attrs["framing"]``).
    """
    batch_size = whole_number(batch_size, "--batch-size", lo=1, hi=MAX_BATCH)
    net, cfg = load_run(resolve_run(run))
    classes = list(cfg["classes"])
    paths = expand_inputs(inputs)
    _check_batch(batch_size, len(paths), cfg)
    checks = [
        validate_file(p) for p in paths
    ]  # a truncated or unreadable file is recorded, not fatal
    ok = np.array([c.status == "ok" for c in checks], dtype=bool)
    dev = resolve_device(device)
    good_paths = [p for p, good in zip(paths, ok, strict=True) if good]
    boxes, framed = run_boxes(cfg, good_paths, progress, framing)
    store = ImageStore(good_paths, cfg["data_config"], progress=progress, boxes=boxes)
    _, probs_ok = embed_and_classify(
        net.to(dev),
        store,
        np.arange(int(ok.sum())),
        cfg["data_config"],
        device=dev,
        batch_size=batch_size,
        amp=amp,
        progress=progress,
    )
    probs = np.full((len(paths), len(classes)), np.nan)
    probs[ok] = probs_ok
    best = np.where(ok, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)
    table = pd.DataFrame(
        {
            "path": paths,
            "status": [c.status for c in checks],
            "detail": pd.Series([c.detail for c in checks], dtype="object"),
            "prediction": pd.Series([classes[i] if i >= 0 else None for i in best], dtype="object"),
            "confidence": np.where(ok, np.nan_to_num(probs, nan=0.0).max(axis=1), np.nan),
        }
    )
    for i, c in enumerate(classes):
        table[f"p_{c}"] = probs[:, i].astype(np.float64)
    if faces:
        table = table.merge(_face_columns(paths), on="path", how="left")
    table.attrs["framing"] = framed  # face: the faces were cut out around their landmarks
    return table


def _face_columns(paths: list[str]) -> pd.DataFrame:
    """Face analysis and face-screen verdicts (the ``curate screen`` defaults) per path."""
    from curate.faces import analyze_faces
    from curate.screens.faces import face_verdicts

    verdicts = face_verdicts(analyze_faces(paths))
    verdicts["path"] = paths
    return verdicts
