"""Warnings in plain words: what in a screen run should stop a curator from trusting it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.report.inputs import ScreenRun
from curate.stats.statistical import thresholds

# More than this share of analysed images without a face is worth a warning.
MAX_NO_FACE_SHARE = 0.10
# A calibration share outside [nominal / 2, 2 * nominal] that is also beyond
# sampling noise (3 binomial standard errors) means the null does not fit.
CALIBRATION_RATIO = 2.0


@dataclass(frozen=True)
class Alert:
    level: str  # "red" (results are not trustworthy) or "amber" (look before acting)
    text: str


def _truthy(value: Any) -> bool:
    return value is True or (
        isinstance(value, str) and value.strip().lower() in ("true", "1", "yes")
    )


def random_weights(run: ScreenRun) -> Alert | None:
    p = run.params
    inputs = (run.run or {}).get("inputs") or {}
    weights = p.get("weights")
    if (
        _truthy(p.get("random_weights"))
        or _truthy(inputs.get("random_weights"))
        or (isinstance(weights, str) and weights.lower() == "none")
    ):
        return Alert(
            "red",
            "The backbone ran with RANDOM weights (--weights none). Its distances "
            "say nothing about expressions: do not use these rejections to clean data.",
        )
    return None


def calibration_misfit(share: Any, nominal: Any, n_pairs: Any) -> bool:
    """True when an observed calibration share is far from its nominal alpha."""
    if not all(isinstance(v, (int, float)) for v in (share, nominal)) or not 0 < nominal < 1:
        return False
    n = n_pairs if isinstance(n_pairs, (int, float)) and n_pairs > 0 else None
    noise = 3 * math.sqrt(nominal * (1 - nominal) / n) if n else 0.0
    outside = share > CALIBRATION_RATIO * nominal or share < nominal / CALIBRATION_RATIO
    return outside and abs(share - nominal) > noise


def null_misfit(run: ScreenRun) -> Alert | None:
    b = run.boundary or {}
    cal = b.get("calibration") or {}
    n = cal.get("n_pairs")
    bad = []
    for side, share_key, nominal_key in (
        ("above T_pos", "share_above_t_pos", "nominal_alpha_pos"),
        ("below T_neg", "share_below_t_neg", "nominal_alpha_neg"),
    ):
        share, nominal = cal.get(share_key), cal.get(nominal_key, b.get(nominal_key[8:]))
        if share is not None and nominal is not None and calibration_misfit(share, nominal, n):
            bad.append(
                f"{100 * share:.1f}% of random different-label pairs fall {side} "
                f"where {100 * nominal:.1f}% was expected"
            )
    if not bad:
        return None
    used = str(b.get("null", ""))
    fitting = [name for name in fitting_nulls(b) if name != used]
    ranking = (
        "Read the rejections as a ranking: choose alpha by the share of tuples to keep in "
        "the Sensitivity section, or use a backbone that separates these expressions "
        "better (curate finetune)."
    )
    if used in (b.get("nulls") or {}):  # a global null: every alternative was checked
        advice = (
            f"--null {' or --null '.join(fitting)} fits these distances (checked on the "
            "random-pair sample in boundary.json): re-run with it."
            if fitting
            else "No null fits these distances (checked on the random-pair sample in "
            "boundary.json), so no --null setting will make the rejection rates match "
            "alpha. " + ranking
        )
    else:  # a class-aware null: only the global ones can be checked from the stored sample
        advice = (
            f"Of the global nulls, --null {' or --null '.join(fitting)} fits the random "
            "different-label pairs stored in boundary.json: try it."
            if fitting
            else "None of the global nulls fits the random different-label pairs stored in "
            "boundary.json either. " + ranking
        )
    return Alert(
        "red",
        f"The null does not fit this data ({used or 'unknown'} null): "
        + "; ".join(bad)
        + ". Rejection rates will not match alpha. "
        + advice,
    )


def fitting_nulls(b: dict[str, Any]) -> list[str]:
    """The nulls of ``boundary.json`` whose thresholds, at the run's alphas, cut the stored
    random-pair sample close to alpha on both sides (the calibration test, per null)."""
    sample = np.asarray(b.get("random_pair_distances") or [], dtype=float)
    alphas = [
        float(a)
        for a in (b.get("alpha_pos"), b.get("alpha_neg"))
        if isinstance(a, (int, float)) and 0 < a < 1
    ]
    if sample.size < 100 or len(alphas) < 2:
        return []
    a_pos, a_neg = alphas
    out = []
    for name, fit in (b.get("nulls") or {}).items():
        mu, sigma = (fit or {}).get("mu"), (fit or {}).get("sigma")
        if not (isinstance(mu, (int, float)) and isinstance(sigma, (int, float)) and sigma > 0):
            continue
        t_pos, t_neg = thresholds(float(mu), float(sigma), a_pos, a_neg)
        above, below = float(np.mean(sample > t_pos)), float(np.mean(sample < t_neg))
        if not (
            calibration_misfit(above, a_pos, sample.size)
            or calibration_misfit(below, a_neg, sample.size)
        ):
            out.append(str(name))
    return out


def faces_not_found(run: ScreenRun) -> Alert | None:
    f = run.faces
    if f is None or "face_found" not in f.columns or not len(f):
        return None
    missing = int((~f["face_found"].fillna(False).astype(bool)).sum())
    share = missing / len(f)
    if share <= MAX_NO_FACE_SHARE:
        return None
    return Alert(
        "amber",
        f"No face was found in {missing:,} of {len(f):,} images ({share:.0%}). "
        "Tight crops or non-face images may be the cause; the face screens say "
        "nothing about those images.",
    )


def counts_mismatch(run: ScreenRun) -> Alert | None:
    kept = int(run.scores["keep"].sum())
    rejected = len(run.scores) - kept
    bad = [
        f"{name}.parquet has {n:,} rows but scores.parquet marks {m:,}"
        for name, n, m in (
            ("kept", run.n_kept_file, kept),
            ("rejected", run.n_rejected_file, rejected),
        )
        if n is not None and n != m
    ]
    if not bad:
        return None
    return Alert(
        "amber",
        "The output files disagree: "
        + "; ".join(bad)
        + ". The run may have been interrupted; re-run `curate screen`.",
    )


def alerts(run: ScreenRun) -> list[Alert]:
    """Every alert that applies to the run, most serious first."""
    found = [
        a
        for a in (random_weights(run), null_misfit(run), faces_not_found(run), counts_mismatch(run))
        if a
    ]
    return sorted(found, key=lambda a: a.level != "red")
