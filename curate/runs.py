"""The run format: the embedding network of a fine-tuning run, and how it is saved and read.

Low in the flow on purpose: :mod:`curate.backbone` loads runs (``--weights RUN``, the
bundled model) and :mod:`curate.train` writes them; both import this module.

A run folder holds ``model.safetensors`` (the weights of :class:`EmbeddingNet`) and
``config.json`` with the keys ``backbone`` (timm name), ``embed_dim``, ``scale``,
``classes``, ``in_chans``, ``data_config`` (timm's ``input_size``, ``mean``, ``std``,
``interpolation``, ``crop_pct``, ``crop_mode``) and ``pretrained_from``.
:func:`load_run` reads it back; ``curate screen --weights RUN`` and ``curate predict``
use it. Which folder is a run is decided by :func:`curate.sources.is_run_dir`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import CurateError
from curate.io import atomic_path, write_json
from curate.sources import RUN_CONFIG_FILE as CONFIG_FILE
from curate.sources import RUN_MODEL_FILE as MODEL_FILE

REQUIRED_KEYS = ("backbone", "embed_dim", "scale", "classes", "in_chans", "data_config")
# timm's preprocessing keys: what a run's ``data_config`` holds and what the embedding cache keys on
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


class EmbeddingNet(nn.Module):
    """A timm backbone, a linear embedding head and a classification head.

    ``forward(x)`` returns L2-normalised embeddings scaled to the modulus ``scale``;
    ``classify(x)`` returns class logits computed from those embeddings, a linear layer
    on the unit-length embedding times ``logit_scale`` (default of ``curate finetune``:
    :data:`curate.train.config.DEFAULT_LOGIT_SCALE`).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, embed_dim: int,
                 n_classes: int, scale: float, logit_scale: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embed_dim)
        self.classifier = nn.Linear(embed_dim, max(n_classes, 1))
        self.scale = float(scale)
        self.logit_scale = float(logit_scale)
        self.embed_dim = int(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of a batch of images, scaled to ``scale`` (float32)."""
        z = self.head(self.backbone(x))
        return F.normalize(z.float(), dim=1) * self.scale

    def logits_from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """Class logits of embeddings returned by :meth:`forward`: a linear layer on the
        unit-length embedding times ``logit_scale``."""
        return self.classifier(emb * (self.logit_scale / self.scale))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of images."""
        return self.logits_from_embeddings(self.forward(x))


def create_backbone(name: str, in_chans: int | None = None) -> nn.Module:
    """A timm feature extractor (``num_classes=0``, pooled features), randomly initialised;
    ``in_chans`` None keeps the model's own (3 for timm's models)."""
    import timm

    extra = {} if in_chans is None else {"in_chans": in_chans}
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, **extra)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown names
        raise CurateError(f"unknown timm backbone {name!r}: {exc}",
                          hint="run `python -c 'import timm; print(timm.list_models())'` for names") from exc


def make_data_config(model: nn.Module, in_chans: int,
                     input_size: int | Sequence[int] | None = None) -> dict[str, Any]:
    """timm's data config for ``model``, adapted to ``in_chans`` and an optional input size.

    For one input channel the mean and standard deviation are averaged over the RGB
    values, so a grey image is normalised like the grey value of an RGB image.
    """
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    mean, std = list(cfg["mean"]), list(cfg["std"])
    if in_chans == 1 and len(mean) != 1:
        mean, std = [float(sum(mean) / len(mean))], [float(sum(std) / len(std))]
    elif in_chans != len(mean):
        mean, std = [float(mean[0])] * in_chans, [float(std[0])] * in_chans
    size = list(cfg["input_size"][1:])
    crop_pct = float(cfg.get("crop_pct", 1.0))
    if input_size is not None:
        size = [int(input_size), int(input_size)] if isinstance(input_size, int) else [int(s) for s in input_size]
        crop_pct = 1.0  # an explicit size means: resize the whole image to it
    return {
        "input_size": [int(in_chans), *size],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "crop_pct": crop_pct,
        "crop_mode": str(cfg.get("crop_mode", "center")),
    }


def build_net(backbone: str, *, in_chans: int, embed_dim: int, classes: Sequence[str],
              scale: float, logit_scale: float) -> EmbeddingNet:
    """A randomly initialised :class:`EmbeddingNet` for a timm ``backbone``."""
    body = create_backbone(backbone, in_chans)
    return EmbeddingNet(body, int(body.num_features), embed_dim, len(classes), scale, logit_scale)


def run_config(net: EmbeddingNet, *, backbone: str, classes: Sequence[str], in_chans: int,
               data_config: Mapping[str, Any], pretrained_from: str | None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` of a run."""
    cfg: dict[str, Any] = {
        "format": "curate-finetune-run/1",
        "backbone": backbone,
        "embed_dim": net.embed_dim,
        "scale": net.scale,
        "logit_scale": net.logit_scale,
        "classes": list(classes),
        "in_chans": int(in_chans),
        "data_config": dict(data_config),
        "pretrained_from": pretrained_from,
    }
    if extra:
        cfg.update(extra)
    return cfg


def save_weights(net: nn.Module, path: str | Path) -> Path:
    """Write the network's weights as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def save_run(net: EmbeddingNet, run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``run_dir``."""
    run = Path(run_dir)
    save_weights(net, run / MODEL_FILE)
    write_json(dict(config), run / CONFIG_FILE)
    return run


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """Read and check a run's ``config.json``."""
    run = Path(run_dir)
    cfg_path = run / CONFIG_FILE
    if not run.is_dir():
        raise CurateError(f"run folder not found: {run}", hint="pass the --out folder of `curate finetune`")
    if not cfg_path.is_file():
        raise CurateError(f"{cfg_path} is missing: {run} is not a curate fine-tuning run",
                          hint="pass the --out folder of a finished `curate finetune`")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurateError(f"cannot read {cfg_path}: {exc}", hint="re-run `curate finetune`") from exc
    if not isinstance(cfg, dict):
        raise CurateError(f"{cfg_path} does not hold a JSON object", hint="re-run `curate finetune`")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    missing += [f"data_config.{k}" for k in DATA_CONFIG_KEYS if k not in (cfg.get("data_config") or {})]
    if missing:
        raise CurateError(f"{cfg_path} lacks the keys {', '.join(missing)}", hint="re-run `curate finetune`")
    return cfg


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a missing or corrupted file into a CurateError."""
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise CurateError(f"weights file not found: {p}", hint="re-run `curate finetune`, or pass the right folder")
    try:
        return load_file(str(p))
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError
        raise CurateError(f"corrupted checkpoint {p}: {exc}",
                          hint="re-run `curate finetune` (it resumes from RUN/checkpoints when they are intact)") from exc


def load_run(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[EmbeddingNet, dict[str, Any]]:
    """Load a fine-tuning run: the :class:`EmbeddingNet` (in eval mode) and its config.

    Raises :class:`CurateError` when ``config.json`` or ``model.safetensors`` is missing,
    unreadable, or does not match the architecture the config describes.
    """
    run = Path(run_dir)
    cfg = read_run_config(run)
    state = load_weights_file(run / MODEL_FILE)
    net = build_net(cfg["backbone"], in_chans=int(cfg["in_chans"]), embed_dim=int(cfg["embed_dim"]),
                    classes=cfg["classes"], scale=float(cfg["scale"]),
                    logit_scale=float(cfg.get("logit_scale", 1.0)))  # runs before logit_scale existed used 1
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CurateError(f"{run / MODEL_FILE} does not match {run / CONFIG_FILE} "
                          f"(backbone {cfg['backbone']!r}, embed_dim {cfg['embed_dim']}): {str(exc)[:300]}",
                          hint="the two files come from different runs; re-run `curate finetune`") from exc
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CurateError(f"{run / MODEL_FILE} holds NaN or infinite weights",
                          hint="the run diverged; lower --lr and re-run `curate finetune`")
    return net.to(device).eval(), cfg
