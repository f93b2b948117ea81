"""The face analysis the representations share: one landmarker pass per image (cached),
with the blendshapes and the landmarks' box (:func:`curate.faces.analyze_faces`)."""

from __future__ import annotations

import pandas as pd

from curate.cache import OFF
from curate.representations.base import RepresentationContext


def face_analysis(ctx: RepresentationContext) -> pd.DataFrame:
    """The face analysis of ``ctx.images`` with ``blendshapes`` and ``face_box``, made once
    per run (``ctx.shared["faces"]``) and kept in the shared cache, so the face screens
    that run next read it from there."""
    if "faces" not in ctx.shared:
        from curate.faces.analyze import analyze_faces

        progress = ctx.progress
        ctx.shared["faces"] = analyze_faces(
            ctx.images["path"].tolist(),
            ctx.images["sha256"].tolist(),
            cache_dir=ctx.cache_dir if ctx.cache_dir is not None else OFF,
            face_model=ctx.settings.get("face_model"),
            engine=ctx.engine,
            blendshapes=True,
            progress=(lambda done, total: progress("faces", done, total)) if progress else None,
        )
    return ctx.shared["faces"]
