"""``represent``: the representation a screen run uses, chosen per dataset from numbers.

With ``auto`` every candidate representation (:func:`curate.representations.registered`,
those with ``candidate``) is computed and measured on the dataset's own labels by a
cross-validated linear probe (:func:`curate.representations.probe.probe`, folds grouped
by ``subject`` when the images have one), and the one whose probe has the highest
balanced accuracy is used; a later candidate must beat an earlier one by more than
:data:`MIN_GAIN` (ties keep the earlier, simpler one: ``backbone`` first). The measures,
the choice and the sentence that says it ("backbone 0.50, blendshapes 0.58, combined
0.61: using combined") go to ``run.json``, the CLI summary and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.representations import AUTO, defaults, get, registered
from curate.representations.base import Features, RepresentationContext
from curate.representations.probe import ProbeResult, probe

MIN_GAIN = 0.01  # balanced accuracy a later candidate must add to be chosen over an earlier one
MIN_PER_CLASS = 2  # classes with fewer labelled images are left out of the probe


@dataclass
class Chosen:
    """The representation used, as asked and as resolved, and the measures behind the choice."""

    setting: str
    features: Features
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    probe: ProbeResult | None = None
    sentence: str = ""

    @property
    def name(self) -> str:
        return self.features.name

    def record(self) -> dict[str, Any]:
        """JSON-ready, for ``run.json``'s ``representation``."""
        return {
            "setting": self.setting,
            "used": self.name,
            "measure": "probe balanced accuracy",
            "measures": self.measures,
            "summary": self.sentence,
            "details": self.features.details,
            "images_missing": int(self.features.missing.sum()),
        }


def represent(ctx: RepresentationContext, setting: str = AUTO, *, seed: int = 0) -> Chosen:
    """Compute the representation ``setting`` (a registered name, or ``auto``) of ``ctx.images``.

    The representations' options missing from ``ctx.settings`` take their defaults."""
    ctx.settings = {**defaults(), **ctx.settings}
    labels = ctx.images["label"].astype(str).to_numpy()
    groups = ctx.images["subject"].to_numpy() if "subject" in ctx.images.columns else None
    if groups is not None and ctx.images["subject"].isna().all():
        groups = None
    if setting != AUTO:
        feats = get(setting).compute(ctx)
        pr = _probe(feats, labels, groups, seed)
        measures = {feats.name: pr.to_dict()} if pr is not None else {}
        sentence = (
            f"{feats.name} {pr.balanced_accuracy:.2f}: using {feats.name} (--representation {setting})"
            if pr is not None
            else f"using {feats.name} (--representation {setting})"
        )
        return Chosen(setting, feats, measures, pr, sentence)
    candidates = [r for r in registered() if r.candidate]
    if not candidates:
        raise CurateError(
            "no representation is registered as a candidate for --representation auto",
            hint="pass --representation NAME",
        )
    results: list[tuple[Features, ProbeResult | None]] = []
    for rep in candidates:
        feats = rep.compute(ctx)
        results.append((feats, _probe(feats, labels, groups, seed)))
    best = 0
    for i, (_, pr) in enumerate(results):
        top = results[best][1]
        if pr is not None and (
            top is None or pr.balanced_accuracy > top.balanced_accuracy + MIN_GAIN
        ):
            best = i
    measures = {f.name: pr.to_dict() for f, pr in results if pr is not None}
    feats, pr = results[best]
    sentence = ", ".join(f"{f.name} {p.balanced_accuracy:.2f}" for f, p in results if p is not None)
    sentence = (
        f"{sentence}: using {feats.name}"
        if sentence
        else f"too few labels to measure: using {feats.name}"
    )
    return Chosen(AUTO, feats, measures, pr, sentence)


def _probe(
    feats: Features, labels: np.ndarray, groups: np.ndarray | None, seed: int
) -> ProbeResult | None:
    """The probe of ``feats`` on the images whose class has at least :data:`MIN_PER_CLASS`
    labelled images (None when fewer than two such classes); rows outside get uniform
    probabilities."""
    names, counts = np.unique(labels, return_counts=True)
    keep_classes = names[counts >= MIN_PER_CLASS]
    if keep_classes.size < 2:
        return None
    rows = np.flatnonzero(np.isin(labels, keep_classes))
    pr = probe(
        feats.vectors[rows],
        labels[rows],
        groups=None if groups is None else groups[rows],
        seed=seed,
    )
    if rows.size == labels.size:
        return pr
    full = np.full((labels.size, pr.probabilities.shape[1]), 1.0 / pr.probabilities.shape[1])
    full[rows] = pr.probabilities
    pr.probabilities = full
    return pr
