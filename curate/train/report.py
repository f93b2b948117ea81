"""``RUN/report.html``: training curves, drop rate per step, confusion matrix, per-class accuracy.

A single self-contained page: matplotlib figures are inlined as base64 PNG and every
string that comes from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.io import write_text
from curate.report.html import CSP  # the screen report's policy: no network, no script


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) < 3 or n <= 1:
        return y
    n = min(n, len(y))
    kernel = np.ones(n) / n
    padded = np.concatenate([np.full(n - 1, y[0]), y])
    return np.convolve(padded, kernel, mode="valid")


def curves_figure(metrics: pd.DataFrame) -> str | None:
    """Training loss and kept share per step; validation accuracy and macro F1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = metrics[metrics["phase"] == "train"] if "phase" in metrics else metrics.iloc[0:0]
    val = metrics[metrics["phase"] == "val"] if "phase" in metrics else metrics.iloc[0:0]
    if train.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    w = max(1, len(train) // 50)
    steps = train["step"].to_numpy()
    for col, lab in (
        ("loss", "total loss"),
        ("metric_loss", "tuple loss"),
        ("ce_loss", "classification loss"),
    ):
        if col in train:
            axes[0].plot(steps, _smooth(train[col].to_numpy(float), w), label=lab)
    if "val_loss" in val and val["val_loss"].notna().any():
        axes[0].plot(val["step"], val["val_loss"], "o-", label="val classification loss")
    axes[0].set_xlabel("step")
    axes[0].set_title("losses (train smoothed)")
    axes[0].legend(fontsize=8)
    if "train_accuracy" in train:
        axes[1].plot(
            steps, _smooth(train["train_accuracy"].to_numpy(float), w), label="train batch accuracy"
        )
    for col, lab in (("val_accuracy", "val accuracy"), ("val_macro_f1", "val macro F1")):
        if col in val and val[col].notna().any():
            axes[1].plot(val["step"], val[col], "o-", label=lab)
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("step")
    axes[1].set_title("accuracy")
    axes[1].legend(fontsize=8)
    return _figure_png(fig)


def drops_figure(metrics: pd.DataFrame) -> str | None:
    """Share of tuples dropped per step by each sub-boundary, and the effective dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = metrics[metrics["phase"] == "train"] if "phase" in metrics else metrics.iloc[0:0]
    if train.empty or "share_dropped" not in train:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    steps = train["step"].to_numpy()
    w = max(1, len(train) // 50)
    for col, lab in (
        ("share_dropped", "dropped (any)"),
        ("share_too_far", "positive_too_far"),
        ("share_too_close", "negative_too_close"),
    ):
        axes[0].plot(steps, _smooth(train[col].to_numpy(float), w), label=lab)
    axes[0].set_ylim(0, 1)
    axes[0].set_xlabel("step")
    active = "screen_active" in train and train["screen_active"].fillna(False).astype(bool).any()
    axes[0].set_title(
        "share of batch tuples dropped by the in-loop boundary"
        if active
        else "in-loop screening was off: nothing dropped"
    )
    axes[0].legend(fontsize=8)
    if "d_null" in train and pd.to_numeric(train["d_null"], errors="coerce").notna().any():
        axes[1].plot(steps, pd.to_numeric(train["d_null"], errors="coerce"), label="d_null")
        axes[1].set_title("null dimension of the window")
        axes[1].set_xlabel("step")
    else:
        axes[1].axis("off")
    return _figure_png(fig)


def confusion_figure(final: Mapping[str, Any]) -> str | None:
    """Row-normalised confusion matrix of the validation split."""
    if not final.get("confusion"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(final["confusion"], dtype=float)
    classes = list(final["classes"])
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.6 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_title("validation confusion matrix (counts; colour = row share)")
    return _figure_png(fig)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _per_class_table(final: Mapping[str, Any]) -> str:
    rows = final.get("per_class") or []
    if not rows:
        return "<p>No validation split: no per-class accuracy.</p>"
    body = "".join(
        f"<tr><td>{html.escape(str(r['class']))}</td><td>{r['n']}</td><td>{_fmt(r['accuracy'])}</td>"
        f"<td>{_fmt(r.get('precision'))}</td><td>{_fmt(r['f1'])}</td></tr>"
        for r in rows
    )
    return (
        "<table><tr><th>class</th><th>images</th><th>accuracy (recall)</th><th>precision</th><th>F1</th></tr>"
        f"{body}</table>"
    )


def _margins_table(margins: pd.DataFrame | None) -> str:
    """The class-pair margins of the last epoch (row: anchor class, column: negative class)."""
    if margins is None or margins.empty:
        return ""
    last = margins[margins["epoch"] == margins["epoch"].max()]
    grid = last.pivot(index="anchor_class", columns="negative_class", values="margin")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in grid.columns)
    body = "".join(
        f"<tr><th>{html.escape(str(i))}</th>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>"
        for i, r in zip(grid.index, grid.to_numpy(dtype=float), strict=True)
    )
    return (
        f"<h2>Class-pair margins (epoch {int(last['epoch'].iloc[0]) + 1}; row: anchor class, column: negative "
        f"class)</h2><table><tr><th></th>{head}</tr>{body}</table>"
    )


def face_rejects_row(params: Mapping[str, Any]) -> str:
    """What the face screen's rejected images count as, by ``--face-rejects``."""
    if params.get("face_rejects") == "classify":
        return "face-screen rejects, in the classification loss only"
    return "images left out by the face screen"


def left_out_columns(params: Mapping[str, Any], counts: Mapping[str, Any]) -> list[str]:
    """The stages of ``counts["left_out_by_label"]`` that ran: ``face_rejected`` with a
    ``--face-screen``, ``suppressed`` with ``--exclude-suspects``."""
    return [
        col
        for col, ran in (
            ("face_rejected", counts.get("face_rejected_images") is not None),
            ("suppressed", bool(params.get("exclude_suspects"))),
        )
        if ran
    ]


def _left_out_table(params: Mapping[str, Any], counts: Mapping[str, Any]) -> str:
    """Images left out per label (face screen, outlier suppression), so a bias shows."""
    rows = counts.get("left_out_by_label") or []
    cols = left_out_columns(params, counts)
    if not rows or not cols:
        return ""
    names = {
        "face_rejected": "face-screen rejects"
        + (" (classification only)" if params.get("face_rejects") == "classify" else ""),
        "suppressed": "suppressed (outliers)",
    }
    head = "".join(f"<th>{html.escape(names[c])}</th><th>share</th>" for c in cols)
    body = "".join(
        f"<tr><td>{html.escape(str(r['label']))}</td><td>{r['images']}</td>"
        + "".join(f"<td>{r[c]}</td><td>{r[c + '_share']:.1%}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    return (
        "<h2>Images left out, by label (training images)</h2>"
        f"<table><tr><th>label</th><th>images</th>{head}</tr>{body}</table>"
    )


def _stage_rows(params: Mapping[str, Any], counts: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Summary rows of the stages that ran: the boundary's sides on the mined triplets, the
    outlier suppression (what it ranked, how many images it left out) and the face screen."""
    rows: list[tuple[str, Any]] = []
    if params.get("mining") == "batch-hard":
        rows.append(("training images (batch-hard pool)", counts.get("training_images")))
        rows.append(("mined triplets", counts.get("mined_triplets")))
        sides = "both" if params.get("screen_negatives", True) else "positive only"
        rows.append(("boundary sides on the mined triplets", sides))
    if params.get("exclude_suspects"):
        rank = "within each label" if params.get("suspect_per_class") else "over all images"
        if params.get("suspect_class_cap") is not None:
            rank += f", at most {params['suspect_class_cap']} of any label"
        score = str(params.get("suspect_score"))
        prior = params.get("suspect_prior")
        if prior:
            whose = (
                "--face-screen folder's"
                if prior == params.get("face_screen")
                else "--suspect-prior"
            )
            score += f" and the label suspicion of the {whose} screen"
        rows.append(
            (
                "outlier suppression",
                f"the {params.get('suspect_share')} most suspect by {score}, "
                f"{rank}: {counts.get('images_excluded')} images",
            )
        )
    if counts.get("face_rejected_images") is not None:
        rows.append((face_rejects_row(params), counts.get("face_rejected_images")))
    return rows


def build_report(
    *,
    metrics: pd.DataFrame,
    final: Mapping[str, Any],
    config: Mapping[str, Any],
    record: Mapping[str, Any],
    margins: pd.DataFrame | None = None,
) -> str:
    """The report page as a string."""
    train = metrics[metrics["phase"] == "train"] if "phase" in metrics else metrics
    params = record.get("params", {})
    counts = record.get("counts", {})
    summary = [
        ("backbone", config.get("backbone")),
        ("weights", config.get("pretrained_from") or "random initialisation"),
        ("classes", ", ".join(map(str, config.get("classes", [])))),
        ("tuples", counts.get("tuples")),
        ("steps", counts.get("steps")),
        (
            "framing",
            "faces cut out around their landmarks"
            if params.get("framing") == "face"
            else "whole pictures",
        ),
        ("in-loop screening", "every step" if params.get("screen_every_step") else "off"),
        ("mining", params.get("mining")),
        ("margin", f"{params.get('margin')} ({params.get('margin_mode', 'global')})"),
        ("null", params.get("null")),
        ("alpha_pos / alpha_neg", f"{params.get('alpha_pos')} / {params.get('alpha_neg')}"),
        *_stage_rows(params, counts),
        ("mean share dropped per step", counts.get("mean_share_dropped")),
        ("steps where every tuple was dropped", counts.get("steps_all_dropped")),
        ("validation accuracy", final.get("accuracy")),
        ("validation macro F1", final.get("macro_f1")),
    ]
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in summary)
    warn = ""
    if not config.get("pretrained_from"):
        warn = '<p class="warn">This network started from random weights.</p>'
    parts = []
    for title, b64 in (
        ("Curves", curves_figure(metrics)),
        ("In-loop screening", drops_figure(metrics)),
        ("Confusion matrix", confusion_figure(final)),
    ):
        if b64:
            parts.append(f"<h2>{html.escape(title)}</h2>{_img(b64, title)}")
    all_dropped = int(train["all_dropped"].sum()) if "all_dropped" in train else 0
    note = (
        (
            f"<p>{all_dropped} step(s) dropped every tuple of the batch and trained on the classification "
            "loss only.</p>"
        )
        if all_dropped
        else ""
    )
    title = f"curate finetune: {config.get('backbone', '')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
.warn{{color:#b00;font-weight:bold}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>{warn}
<table>{rows}</table>{note}
{_left_out_table(params, counts)}
{"".join(parts)}
{_margins_table(margins)}
<h2>Per-class accuracy (validation)</h2>{_per_class_table(final)}
</body></html>
"""


def write_report(
    run: str | Path,
    *,
    metrics: pd.DataFrame,
    final: Mapping[str, Any],
    config: Mapping[str, Any],
    record: Mapping[str, Any],
) -> Path:
    """Write ``RUN/report.html``."""
    path = Path(run) / "report.html"
    mfile = Path(run) / "class_pair_margins.parquet"
    margins = pd.read_parquet(mfile) if mfile.is_file() else None
    write_text(
        build_report(metrics=metrics, final=final, config=config, record=record, margins=margins),
        path,
    )
    return path
