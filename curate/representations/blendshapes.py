"""``blendshapes``: MediaPipe's 52 face blendshape scores (brow, eye, cheek, nose, mouth and
jaw movements; :data:`curate.faces.landmarks.BLENDSHAPE_NAMES`), made by the face
landmarker's own blendshapes model in the pass that analyses the face.

They do not depend on colour, size or framing, so they carry to photographs a backbone
trained on small grey crops has never seen. The vectors are the scores standardised per
blendshape over the dataset, scaled to a root-mean-square norm of 1
(:func:`~curate.representations.base.block_normalize`): a rare movement (a nose sneer)
counts as much as a common one (on the taiwanese-posed development performers the label
ranking's AUROC is 0.905 standardised against 0.874 raw; ``docs/representations.md``).
A face without landmarks has none: its row is ``missing`` (the reason is the analysis's
``detail``) and sits at the origin, so it speaks for no class; the count is in
``run.json`` and ``embeddings.parquet`` marks it (``missing_reason``).
"""

from __future__ import annotations

import numpy as np

from curate.representations import register
from curate.representations.base import (
    Features,
    Representation,
    RepresentationContext,
    block_normalize,
    impute_missing,
)
from curate.representations.faces import face_analysis

N_BLENDSHAPES = 52


def blendshape_matrix(analysis) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """The ``N x 52`` scores of a face analysis made with blendshapes, which rows have
    none, and why (the analysis's ``detail``)."""
    missing = analysis["blendshapes"].isna().to_numpy()
    out = np.zeros((len(analysis), N_BLENDSHAPES), dtype=np.float32)
    if (~missing).any():
        out[~missing] = np.stack(analysis.loc[~missing, "blendshapes"].to_numpy())
    detail = analysis["detail"].astype(object).where(analysis["detail"].notna(), None).tolist()
    reasons = [(d or "no blendshapes") if m else None for m, d in zip(missing, detail, strict=True)]
    return out, missing, reasons


@register
class Blendshapes(Representation):
    """The face's 52 blendshape scores (MediaPipe's ``output_face_blendshapes``)."""

    name = "blendshapes"
    summary = (
        "MediaPipe's 52 face blendshape scores (expression movements), made with the face analysis"
    )
    needs_faces = True
    progress_stages = {"faces": "face screens"}

    def compute(self, ctx: RepresentationContext) -> Features:
        if "blendshapes" in ctx.shared:
            return ctx.shared["blendshapes"]
        scores, missing, reasons = blendshape_matrix(face_analysis(ctx))
        notes = []
        if missing.any():
            notes.append(
                f"blendshapes: {int(missing.sum()):,} of {len(missing):,} images have no face "
                "landmarks and so no blendshapes; they speak for no class in this representation "
                "(embeddings.parquet: missing_reason)"
            )
        vectors = block_normalize(impute_missing(scores, missing), standardize=True)
        vectors[missing] = 0.0
        feats = Features(
            self.name,
            vectors,
            missing,
            reasons,
            details={"dim": N_BLENDSHAPES, "images_without": int(missing.sum())},
            notes=notes,
        )
        ctx.shared["blendshapes"] = feats
        return feats
