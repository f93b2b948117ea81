"""``backbone``: the embedding of a timm model (the bundled ``fer_resnet10t`` by default,
any timm model with ``--backbone`` / ``--weights``, :func:`curate.backbone.load_backbone`),
with the face framed from its landmarks when faces fill only part of the pictures
(:mod:`curate.representations.framing`)."""

from __future__ import annotations

from curate.cache import OFF
from curate.representations import register
from curate.representations.base import Features, Representation, RepresentationContext


@register
class Backbone(Representation):
    """The backbone's embedding of every image (cached, :mod:`curate.embed`)."""

    name = "backbone"
    summary = (
        "the embedding of a timm backbone (the bundled one by default), faces framed when small"
    )
    progress_stages = {"embed": "embedding images"}

    def compute(self, ctx: RepresentationContext) -> Features:
        if "backbone" in ctx.shared:
            return ctx.shared["backbone"]
        import numpy as np
        import torch

        from curate.backbone import load_backbone
        from curate.embed import embed_images_result

        s = ctx.settings
        boxes, framing = None, {"setting": s.get("framing", "full"), "used": "full"}
        if s.get("framing", "full") != "full":
            from curate.representations.faces import face_analysis
            from curate.representations.framing import decide

            boxes, framing = decide(s["framing"], face_analysis(ctx), ctx.images)
        engine = ctx.engine
        loaded = load_backbone(
            s.get("backbone"),
            s.get("weights"),
            device="cpu" if engine is not None else s.get("device", "auto"),
            seed=s.get("seed", 0),
        )
        param = next(loaded.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        precision, amp_note = "float32", None
        if device.type == "cuda":
            precision = "float16 autocast (CUDA)"
        elif s.get("amp") and engine is not None:
            precision = amp_note = "float32: --amp is not used on an engine's workers"
        elif s.get("amp"):
            from curate.backbone import autocast_precision

            loaded.cpu_bf16, precision = autocast_precision(device, True)
            amp_note = None if loaded.cpu_bf16 else precision
        progress = ctx.progress
        res = embed_images_result(
            ctx.images["path"].tolist(),
            ctx.images["sha256"].tolist(),
            loaded,
            cache_dir=ctx.cache_dir if ctx.cache_dir is not None else OFF,
            batch_size=s.get("batch_size", 64),
            workers=s.get("workers"),
            progress=(lambda d, t: progress("embed", d, t)) if progress else None,
            engine=engine,
            boxes=boxes,
        )
        n = len(ctx.images)
        missing = np.zeros(n, dtype=bool)
        feats = Features(
            self.name,
            res.embeddings,
            missing,
            [None] * n,
            details={
                "backbone": loaded.name,
                "dim": int(res.embeddings.shape[1]),
                "framing": framing,
                "precision": precision,
            },
            weights_source=loaded.weights_source,
            weights_fingerprint=loaded.weights_fingerprint,
            random_weights=loaded.random_weights,
            n_computed=res.n_computed,
            n_cached=res.n_cached,
        )
        if framing.get("used") == "face":
            feats.notes.append(
                f"backbone: faces cover {framing['median_face_share']:.0%} of the picture's side "
                f"(median); the backbone saw them cut out from their landmarks (--framing)"
            )
        if amp_note:
            feats.notes.append(f"backbone: {amp_note}")
        ctx.shared["backbone"] = feats
        ctx.shared["head"] = _head_output(loaded, res.embeddings)
        return feats


def _head_output(loaded, vectors):
    """The run's classification head on the embedding vectors (:mod:`curate.representations.head`),
    or None for a backbone without one."""
    import torch

    from curate.representations.head import HeadOutput, read_training_sample

    logits_of = getattr(loaded.model, "logits_from_embeddings", None)
    if loaded.head_classes is None or logits_of is None:
        return None
    with torch.no_grad():
        logits = logits_of(
            torch.as_tensor(
                vectors, dtype=torch.float32, device=next(loaded.model.parameters()).device
            )
        )
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy().astype("float64")
    name = loaded.run_dir.name if loaded.run_dir is not None else loaded.name
    return HeadOutput(
        name,
        loaded.head_classes,
        probs,
        read_training_sample(loaded.run_dir) if loaded.run_dir is not None else None,
    )
