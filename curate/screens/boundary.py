"""The statistical boundary as a screen: level ``tuple``, reasons ``positive_too_far`` and
``negative_too_close``.

With a class-aware null (``class_empirical``, the default, or ``class``; the math is in
:mod:`curate.stats.nulls`) the positive sub-boundary asks whether an anchor-positive
distance is abnormally large for two faces of the anchor's class, the negative one
whether a negative pair is abnormally close for its class pair; the fit is weighted by
the label screen's posteriors so the noise being hunted does not pull it. With a global
null (``theory``, ``effective``, ``empirical``; :mod:`curate.stats.statistical`) every
pair is tested against the distance of two unrelated faces. Either way the screen writes
each tuple's standardised distances ``z_ap`` and ``z_neg`` (toward rejection), which the
report's alpha-sensitivity grid reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.screens import register
from curate.screens.base import Option, Reason, Screen, ScreenContext, ScreenOutput
from curate.stats.label_model import label_posteriors
from curate.stats.nulls import (
    CLASS_NULLS,
    class_calibration,
    class_pair_verdicts,
    fit_class_nulls,
)
from curate.stats.statistical import (
    NEGATIVE_TOO_CLOSE,
    POSITIVE_TOO_FAR,
    Boundary,
    fit_boundary,
    thresholds,
    tuple_distances,
)
from curate.stats.statistical import (
    NULLS as GLOBAL_NULLS,
)

NULLS = (*GLOBAL_NULLS, *CLASS_NULLS)
DEFAULT_ALPHA = 0.05
DEFAULT_NULL = "class_empirical"
# The distance pairs each member role belongs to.
PAIRS_OF = {
    "anchor": ("d_ap", "d_an", "d_an2"),
    "positive": ("d_ap",),
    "negative": ("d_an", "d_nn2"),
    "negative2": ("d_an2", "d_nn2"),
}
NEGATIVE_PAIRS = ("d_an", "d_an2", "d_nn2")


def _check_alpha(name: str):
    def check(value: float) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CurateError(
                f"{name} must be a number strictly between 0 and 1, got {value!r}",
                hint=f"use for example --{name.replace('_', '-')} 0.05",
            )
        if name == "alpha_pos":
            thresholds(1.0, 1.0, value, 0.5)
        else:
            thresholds(1.0, 1.0, 0.5, value)
        return float(value)

    return check


def _check_null(value: str) -> str:
    if value not in NULLS:
        raise CurateError(f"unknown --null {value!r}", hint=f"use one of {', '.join(NULLS)}")
    return value


@register
class BoundaryScreen(Screen):
    """Anchor-positive distances above T_pos, negative pairs below T_neg (the patent's boundary)."""

    name = "boundary"
    order = 10
    level = "tuple"
    needs_embeddings = True
    summary = "anchor-positive too far or a negative pair too close under the statistical null"
    reasons = (
        Reason(
            POSITIVE_TOO_FAR,
            "positive too far",
            "#d62728",
            "the anchor-positive distance is above T_pos (significance --alpha-pos)",
        ),
        Reason(
            NEGATIVE_TOO_CLOSE,
            "negative too close",
            "#1f77b4",
            "a negative pair is closer than T_neg (significance --alpha-neg)",
        ),
    )
    options = (
        Option(
            "alpha_pos",
            DEFAULT_ALPHA,
            "Significance level of the positive sub-boundary.",
            _check_alpha("alpha_pos"),
        ),
        Option(
            "alpha_neg",
            DEFAULT_ALPHA,
            "Significance level of the negative sub-boundary.",
            _check_alpha("alpha_neg"),
        ),
        Option(
            "null",
            DEFAULT_NULL,
            "class_empirical: one null per class and class pair, fitted "
            "robustly (default); class: the same from class moments; global nulls for "
            "comparison: theory (embedding dim), effective (participation ratio), empirical.",
            _check_null,
            choices=NULLS,
        ),
    )
    files = ("boundary.json",)
    skippable = (
        False  # the method itself; its report sections are the report's own (boundary, sensitivity)
    )

    def report(self, run: Any, ctx: Any) -> list[Any] | None:
        return None

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        if ctx.embeddings is None:
            raise CurateError("the boundary screen needs embeddings")
        s = ctx.settings
        emb, labels, r = ctx.embeddings, ctx.labels, ctx.rows
        dist = tuple_distances(emb, r["anchor"], r["positive"], r["negative"], r.get("negative2"))
        # the global fit is always made: it is the comparison the report draws
        b = fit_boundary(
            emb,
            labels=labels,
            null=s["null"] if s["null"] in GLOBAL_NULLS else "effective",
            alpha_pos=s["alpha_pos"],
            alpha_neg=s["alpha_neg"],
            scale=s["scale"],
            seed=s["seed"],
            center=s["center"],
        )
        if s["null"] in CLASS_NULLS:
            fail, z, record = _class_fit(ctx, dist, b)
        else:
            fail, z = pair_verdicts(dist, b)
            record = b.to_dict()
        too_far = fail["d_ap"]
        too_close = np.logical_or.reduce([fail[k] for k in NEGATIVE_PAIRS if k in fail])
        code = too_far.astype(np.int8) + 2 * too_close.astype(np.int8)
        reason = np.array(
            [
                None,
                POSITIVE_TOO_FAR,
                NEGATIVE_TOO_CLOSE,
                f"{POSITIVE_TOO_FAR};{NEGATIVE_TOO_CLOSE}",
            ],
            dtype=object,
        )[code]
        z_neg = np.max(np.stack([z[k] for k in NEGATIVE_PAIRS if k in z]), axis=0)
        table = pd.DataFrame({**dist, "z_ap": z["d_ap"], "z_neg": z_neg})
        blame = {
            role: np.logical_or.reduce([fail[k] for k in PAIRS_OF[role] if k in fail])
            for role in ctx.roles
        }
        return ScreenOutput(
            score=np.maximum(z["d_ap"], z_neg),
            reject=code > 0,
            reason=reason,
            table=table,
            blame=blame,
            image_columns=pd.DataFrame({"mean_z": mean_z(z, ctx)}),
            artifacts={"boundary": b, "record": record},
        )

    def outputs(self, out: ScreenOutput, ctx: ScreenContext) -> dict[str, dict]:
        return {"boundary.json": out.artifacts["record"]}


def _class_fit(
    ctx: ScreenContext, dist: dict[str, np.ndarray], b: Boundary
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Fit the class-aware nulls (weighted by the label screen's posteriors) and test every pair."""
    s = ctx.settings
    emb, labels, r = ctx.require_embeddings("boundary"), ctx.labels, ctx.rows
    label = ctx.results.get("label")
    if label is not None and label.table is not None:
        verdicts, model = label.table, label.artifacts["model"]
    else:
        verdicts, model = label_posteriors(emb, labels, prior_floor=s["label_prior_floor"])
    p = verdicts["label_posterior"].to_numpy(np.float64)
    w = np.sqrt(np.where(np.isnan(p), 1.0, p))
    nulls = fit_class_nulls(
        emb,
        labels,
        method=s["null"],
        weights=w,
        alpha_pos=s["alpha_pos"],
        alpha_neg=s["alpha_neg"],
        scale=s["scale"],
        seed=s["seed"],
    )
    accepted = class_calibration(emb, labels, nulls, weights=w, seed=s["seed"] + 1)
    everyone = class_calibration(emb, labels, nulls, seed=s["seed"] + 1)
    nulls = nulls.with_calibration({"accepted_pairs": accepted, "all_labelled_pairs": everyone})
    codes = nulls.codes(labels)
    n2 = codes[r["negative2"]] if "negative2" in r else None
    fail, z = class_pair_verdicts(dist, nulls, codes[r["anchor"]], codes[r["negative"]], n2)
    record = b.to_dict()
    record.update(null=s["null"], d_null=None, mu=None, sigma=None, t_pos=None, t_neg=None)
    record["calibration"] = {
        "pairs": "accepted",
        "n_pairs": accepted["n_same_pairs"] + accepted["n_different_pairs"],
        "share_above_t_pos": accepted["share_above_t_pos"],
        "share_below_t_neg": accepted["share_below_t_neg"],
        "nominal_alpha_pos": s["alpha_pos"],
        "nominal_alpha_neg": s["alpha_neg"],
        "global_null": b.calibration,
    }
    record["class_nulls"] = nulls.to_dict()
    record["label_model"] = model.to_dict()
    return fail, z, record


def pair_verdicts(
    dist: dict[str, np.ndarray], b: Boundary
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per distance pair: whether it fails its sub-boundary, and its standardised distance
    toward rejection (``(d - mu) / sigma`` for the anchor-positive pair, ``(mu - d) / sigma``
    for negative pairs)."""
    fail = {"d_ap": dist["d_ap"] > b.t_pos}
    z = {"d_ap": (dist["d_ap"] - b.mu) / b.sigma}
    for k in NEGATIVE_PAIRS:
        if k in dist:
            fail[k] = dist[k] < b.t_neg
            z[k] = (b.mu - dist[k]) / b.sigma
    return fail, z


def mean_z(z: dict[str, np.ndarray], ctx: ScreenContext) -> np.ndarray:
    """Per image, the mean of ``z`` over every pair it belongs to."""
    n = len(ctx.images)
    z_sum, z_count = np.zeros(n), np.zeros(n)
    for role, rows in ctx.rows.items():
        for k in PAIRS_OF[role]:
            if k in z:
                z_sum += np.bincount(rows, weights=z[k], minlength=n)
                z_count += np.bincount(rows, minlength=n)
    return z_sum / np.maximum(z_count, 1)
