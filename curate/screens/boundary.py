"""The statistical boundary as a screen: level ``tuple``, reasons ``positive_too_far`` and
``negative_too_close``. The math lives in :mod:`curate.screens.statistical`; this module
fits it to the run's embeddings, applies it to every tuple and says which members each
rejection implicates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.screens import register
from curate.screens.base import Option, Reason, Screen, ScreenContext, ScreenOutput
from curate.screens.statistical import (
    NEGATIVE_TOO_CLOSE,
    NULLS,
    POSITIVE_TOO_FAR,
    Boundary,
    apply_boundary,
    fit_boundary,
    thresholds,
    tuple_distances,
)

DEFAULT_ALPHA = 0.05
DEFAULT_NULL = "effective"
# The distance pairs each member role belongs to.
PAIRS_OF = {"anchor": ("d_ap", "d_an", "d_an2"), "positive": ("d_ap",),
            "negative": ("d_an", "d_nn2"), "negative2": ("d_an2", "d_nn2")}
NEGATIVE_PAIRS = ("d_an", "d_an2", "d_nn2")


def _check_alpha(name: str):
    def check(value: float) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CurateError(f"{name} must be a number strictly between 0 and 1, got {value!r}",
                              hint=f"use for example --{name.replace('_', '-')} 0.05")
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
    level = "tuple"
    needs_embeddings = True
    summary = "anchor-positive too far or a negative pair too close under the statistical null"
    reasons = (
        Reason(POSITIVE_TOO_FAR, "positive too far", "#d62728",
               "the anchor-positive distance is above T_pos (significance --alpha-pos)"),
        Reason(NEGATIVE_TOO_CLOSE, "negative too close", "#1f77b4",
               "a negative pair is closer than T_neg (significance --alpha-neg)"),
    )
    options = (
        Option("alpha_pos", DEFAULT_ALPHA, "Significance level of the positive sub-boundary.",
               _check_alpha("alpha_pos")),
        Option("alpha_neg", DEFAULT_ALPHA, "Significance level of the negative sub-boundary.",
               _check_alpha("alpha_neg")),
        Option("null", DEFAULT_NULL, "Null dimension: theory (embedding dim), effective "
               "(participation ratio), empirical (fit to random different-label pairs).",
               _check_null),
    )
    files = ("boundary.json",)

    def run(self, ctx: ScreenContext) -> ScreenOutput:
        if ctx.embeddings is None:
            raise CurateError("the boundary screen needs embeddings")
        s = ctx.settings
        b = fit_boundary(ctx.embeddings, labels=ctx.labels, null=s["null"], alpha_pos=s["alpha_pos"],
                         alpha_neg=s["alpha_neg"], scale=s["scale"], seed=s["seed"],
                         center=s["center"])
        r = ctx.rows
        dist = tuple_distances(ctx.embeddings, r["anchor"], r["positive"], r["negative"],
                               r.get("negative2"))
        keep, reason = apply_boundary(dist, b)
        fail, z = pair_verdicts(dist, b)
        score = np.max(np.stack(list(z.values())), axis=0)
        blame = {role: np.logical_or.reduce([fail[k] for k in PAIRS_OF[role] if k in fail])
                 for role in ctx.roles}
        return ScreenOutput(score=score, reject=~keep, reason=reason,
                            table=pd.DataFrame(dist), blame=blame,
                            image_columns=pd.DataFrame({"mean_z": mean_z(z, ctx)}),
                            artifacts={"boundary": b})

    def outputs(self, out: ScreenOutput, ctx: ScreenContext) -> dict[str, dict]:
        return {"boundary.json": out.artifacts["boundary"].to_dict()}


def pair_verdicts(dist: dict[str, np.ndarray], b: Boundary) -> tuple[dict[str, np.ndarray],
                                                                     dict[str, np.ndarray]]:
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
