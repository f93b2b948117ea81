"""The image-level label screen: images whose label does not fit, from the label verdicts of
:mod:`curate.stats.label_model` (the maths; its names stay importable from here).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.screens import register
from curate.screens.base import Option, Reason, Screen, ScreenContext, ScreenOutput, check_number
from curate.stats.label_model import (  # noqa: F401  (the maths' old import path)
    LABEL_COLUMNS,
    LABEL_SUSPECT,
    MAX_CLASS_SHARE,
    PRIOR_FLOOR,
    LabelModel,
    cap_per_class,
    class_distances,
    encode_labels,
    label_posteriors,
    label_reject,
)


# ----------------------------------------------------------------------------- suggestions
def run_probe(ctx: ScreenContext):
    """The representation's cross-validated probe (:func:`curate.representations.probe.probe`,
    folds grouped by ``subject`` when the images have one): the run's own when the
    representation stage made one."""
    from curate.representations.probe import probe

    pr = ctx.shared.get("probe")
    if pr is None:
        groups = ctx.images["subject"].to_numpy() if "subject" in ctx.images.columns else None
        if groups is not None and pd.isna(groups).all():
            groups = None
        assert ctx.embeddings is not None  # the label screen needs embeddings (needs_embeddings)
        pr = probe(ctx.embeddings, ctx.labels, groups=groups, seed=int(ctx.settings.get("seed", 0)))
    return pr


def probe_matrix(pr, classes: tuple[str, ...]) -> np.ndarray:
    """The probe's probabilities over ``classes`` (a class it lacks gets ``1 / K``)."""
    col = {c: i for i, c in enumerate(pr.classes)}
    n = pr.probabilities.shape[0]
    out = np.full((n, len(classes)), 1.0 / len(classes))
    for j, c in enumerate(classes):
        if c in col:
            out[:, j] = pr.probabilities[:, col[c]]
    return out


def suggested_confidence(
    probs: np.ndarray, classes: tuple[str, ...], suggested: np.ndarray
) -> np.ndarray:
    """Per image, the probability that ``suggested`` is its class under ``probs`` (``N x K``
    over ``classes``): the out-of-fold probabilities of the probe, or with the network's head
    the calibrated product of both (:func:`curate.representations.head.combined_confidence`).
    Neither saw the image's own label, so the number is not its label's echo;
    ``curate export --relabel`` relabels only above ``--relabel-confidence``."""
    col = {c: i for i, c in enumerate(classes)}
    idx = np.array([col.get(str(s), -1) for s in suggested], dtype=np.int64)
    out = np.where(idx >= 0, probs[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
    return out.astype(np.float64)


# ----------------------------------------------------------------------------- the screen
DEFAULT_ALPHA_LABEL = 0.01


def _check_alpha_label(value: float) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1):
        raise CurateError(
            f"alpha_label must be a number strictly between 0 and 1, got {value!r}",
            hint=f"use for example --alpha-label {DEFAULT_ALPHA_LABEL:g}",
        )
    return float(value)


def _check_prior_floor(value: float) -> float:
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        raise CurateError(
            f"label_prior_floor must be a non-negative number, got {value!r}",
            hint=f"use for example --label-prior-floor {PRIOR_FLOOR:g} "
            "(1 keeps the labelled class shares)",
        )
    return float(value)


def _check_head_setting(value: object) -> str:
    from curate.representations.head import HEAD_SETTINGS

    if value not in HEAD_SETTINGS:
        raise CurateError(
            f"label_head must be one of {', '.join(HEAD_SETTINGS)}, got {value!r}",
            hint="use --label-head auto, on or off",
        )
    return str(value)


@register
class LabelScreen(Screen):
    """Images whose label does not fit: the image-level label verdict (:func:`label_posteriors`)."""

    name = "label"
    order = 20
    level = "image"
    needs_embeddings = True
    ranks_images = True
    skip_help = "Do not run the image-level label screen."
    summary = (
        "the image fits another class better than its own label (label_pvalue < --alpha-label)"
    )
    reasons = (
        Reason(
            LABEL_SUSPECT,
            "label suspect",
            "#bc5090",
            "the image fits another class better than its label: label_pvalue below "
            "--alpha-label (see suggested_label)",
        ),
    )
    options = (
        Option(
            "alpha_label",
            DEFAULT_ALPHA_LABEL,
            "Reject an image's label when its label p-value is below this (label_suspect).",
            _check_alpha_label,
        ),
        Option(
            "label_prior_floor",
            PRIOR_FLOOR,
            "Floor of the estimated class priors, as a share of each class's labelled share "
            "(lower: trust the embedding more about classes that are over-labelled).",
            _check_prior_floor,
        ),
        Option(
            "label_max_class_share",
            MAX_CLASS_SHARE,
            "Never reject more than this share of a class's images on label evidence (its most "
            "suspect first; 1: no cap), so that no class vanishes.",
            check_number(
                "label_max_class_share", low=0, high=1, low_open=True, example=MAX_CLASS_SHARE
            ),
        ),
        Option(
            "label_head",
            "auto",
            "Use the network's classification head as a second judge of the labels: auto (when its "
            "classes cover the dataset's and it agrees with the labels at least 0.6 x as well as the "
            "representation's probe), on, or off (docs/label.md).",
            _check_head_setting,
            choices=("auto", "on", "off"),
        ),
    )
    suspect_columns = (
        "suggested_label",
        "suggested_confidence",
        "suspicion",
        "label_posterior",
        "suggested_posterior",
        "label_pvalue",
        "label_rank",
        "distance_own",
        "distance_suggested",
    )

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        if ctx.embeddings is None:
            raise CurateError("the label screen needs embeddings")
        from curate.representations.head import combined_confidence, decide

        codes, classes = encode_labels(ctx.labels, len(ctx.labels))
        pr = run_probe(ctx)
        sha = ctx.images["sha256"].to_numpy() if "sha256" in ctx.images.columns else None
        evidence = decide(
            ctx.shared.get("head"),
            ctx.labels,
            classes,
            pr.balanced_accuracy,
            ctx.settings["label_head"],
            sha256=sha,
        )
        head = evidence.probabilities if evidence.used else None
        table, model = label_posteriors(
            ctx.embeddings,
            ctx.labels,
            head_probs=head,
            prior_floor=ctx.settings["label_prior_floor"],
        )
        probs = probe_matrix(pr, classes)
        if head is not None:
            probs = combined_confidence(probs, head, codes)
        reject, capped = cap_per_class(
            label_reject(table, ctx.settings["alpha_label"]),
            table,
            ctx.settings["label_max_class_share"],
        )
        reason = np.where(reject, LABEL_SUSPECT, np.array(None, dtype=object)).astype(object)
        score = table["suspicion_logit"].to_numpy(np.float64)
        table["suggested_confidence"] = suggested_confidence(
            probs, classes, table["suggested_label"].to_numpy()
        )
        notes = [
            f"label screen: {c['would_reject']:,} of the {c['n_images']:,} images labelled "
            f"{c['class']} have label p-values below {ctx.settings['alpha_label']:g}; only the "
            f"{c['rejected']:,} most suspect are rejected (--label-max-class-share "
            f"{ctx.settings['label_max_class_share']:g}), so the class does not vanish"
            for c in capped
        ]
        notes = [f"label evidence: {evidence.sentence()}", *evidence.notes, *notes]
        return ScreenOutput(
            score=score,
            reject=reject,
            reason=reason,
            table=table,
            artifacts={
                "model": replace(model, capped=tuple(capped)),
                "notes": notes,
                "evidence": evidence.record(),
            },
        )

    def caption(self, row, code: str) -> list[str]:
        p, s = row.get("label_pvalue"), row.get("suggested_label")
        return [
            d
            for d in (
                f"looks like {s}" if isinstance(s, str) else None,
                f"p = {p:.3g}" if isinstance(p, float) and not math.isnan(p) else None,
            )
            if d
        ]
