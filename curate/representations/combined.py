"""``combined``: the backbone embedding and the blendshapes side by side.

Each block is centred and scaled to a root-mean-square norm of 1
(:func:`~curate.representations.base.block_normalize`; the blendshapes are standardised
per score, as the ``blendshapes`` representation gives them), so the 52 scores weigh as
much as the backbone's hundreds of dimensions.
A face without blendshapes keeps its backbone block and the blendshapes block at the
origin: it falls back to the backbone alone (``missing`` marks it).
"""

from __future__ import annotations

import numpy as np

from curate.representations import register
from curate.representations.base import (
    Features,
    Representation,
    RepresentationContext,
    block_normalize,
)


@register
class Combined(Representation):
    """The backbone embedding and the blendshapes, each block normalised."""

    name = "combined"
    summary = "the backbone embedding and the blendshapes side by side, each block normalised"
    needs_faces = True

    def compute(self, ctx: RepresentationContext) -> Features:
        from curate.representations import get

        back = get("backbone").compute(ctx)
        shapes = get("blendshapes").compute(ctx)
        parts = [block_normalize(back.vectors), shapes.vectors]
        reasons = [
            f"no blendshapes ({r}): backbone alone" if r else None for r in shapes.missing_reason
        ]
        return Features(
            self.name,
            np.hstack(parts).astype(np.float32),
            shapes.missing.copy(),
            reasons,
            details={
                "dim": int(sum(p.shape[1] for p in parts)),
                "blocks": {
                    "backbone": int(parts[0].shape[1]),
                    "blendshapes": int(parts[1].shape[1]),
                },
                "images_without_blendshapes": int(shapes.missing.sum()),
                "backbone": back.details.get("backbone"),
                "framing": back.details.get("framing"),
            },
            notes=back.notes + shapes.notes,
            weights_source=back.weights_source,
            weights_fingerprint=back.weights_fingerprint,
            random_weights=back.random_weights,
            n_computed=back.n_computed,
            n_cached=back.n_cached,
        )
