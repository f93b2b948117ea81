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

import math
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import CurateError
from curate.io import atomic_path, read_json_file, write_json
from curate.sources import RUN_CONFIG_FILE as CONFIG_FILE
from curate.sources import RUN_MODEL_FILE as MODEL_FILE

REQUIRED_KEYS = ("backbone", "embed_dim", "scale", "classes", "in_chans", "data_config")
# timm's preprocessing keys: what a run's ``data_config`` holds and what the embedding cache keys on
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
FORMAT = "curate-finetune-run/1"
# what a run folder may ask for: a run folder can come from anyone, so every value is checked
MAX_EMBED_DIM = 65_536
MAX_INPUT_SIDE = 1_024  # pixels; expression models read 48 to 260
MAX_IN_CHANS = 16
MAX_CLASSES = 100_000
MAX_HEAD_PARAMS = 2**27  # embed_dim x (classes + backbone features): 512 MiB of float32 weights
MAX_FEATURES = 8_192  # the widest backbone feature vector assumed in that estimate
MAX_BACKBONE_NAME = 128  # characters
MAX_SCALE = 1e4  # scale and logit_scale: beyond this, float32 logits and distances overflow
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
CROP_MODES = ("center", "squash", "border")
# a timm model name, optionally with a pretrained tag (resnet18, vit_small_patch16_224.augreg_in21k);
# never a source prefix (hf-hub:, local-dir:, timm:) or a path, which make timm fetch code or weights
TIMM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)?")
_UNTRUSTED_HINT = (
    "this config.json was not written by `curate finetune` or was edited; use a run folder you "
    "trust, or re-run `curate finetune`"
)


class EmbeddingNet(nn.Module):
    """A timm backbone, a linear embedding head and a classification head.

    ``forward(x)`` returns L2-normalised embeddings scaled to the modulus ``scale``;
    ``classify(x)`` returns class logits computed from those embeddings, a linear layer
    on the unit-length embedding times ``logit_scale`` (default of ``curate finetune``:
    :data:`curate.train.config.DEFAULT_LOGIT_SCALE`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        embed_dim: int,
        n_classes: int,
        scale: float,
        logit_scale: float,
    ) -> None:
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


def check_backbone_name(name: object, where: str = "--backbone") -> str:
    """``name`` when it is a plain timm model name; a :class:`CurateError` otherwise.

    timm reads ``hf-hub:ORG/NAME`` and ``local-dir:PATH`` as places to load a model's
    config and weights from: curate never lets a name reach the network or another
    folder, whether it comes from the command line or from a run's ``config.json``.
    """
    if isinstance(name, str) and len(name) > MAX_BACKBONE_NAME:
        raise CurateError(
            f"{where}: a backbone name of {len(name):,} characters ({name[:40]!r}...) is longer than "
            f"any timm model name (at most {MAX_BACKBONE_NAME})",
            hint="pass a model name such as resnet18 (`curate models` lists them)",
        )
    if isinstance(name, str) and TIMM_NAME.fullmatch(name):
        return name
    text = repr(name) if not isinstance(name, str) else repr(name[:200])
    why = (
        "a timm source prefix (hf-hub:, local-dir:, ...), which would load the model from the network or "
        "another folder"
        if isinstance(name, str) and ":" in name
        else "not a timm model name"
    )
    raise CurateError(
        f"{where}: {text} is {why}; curate accepts plain timm model names only "
        "(letters, digits, _ and -, an optional .tag)",
        hint="pass a model name such as resnet18, and the weights with --weights FILE",
    )


def create_backbone(name: str, in_chans: int | None = None) -> nn.Module:
    """A timm feature extractor (``num_classes=0``, pooled features), randomly initialised;
    ``in_chans`` None keeps the model's own (3 for timm's models)."""
    import timm

    check_backbone_name(name)
    extra: dict[str, Any] = {} if in_chans is None else {"in_chans": in_chans}
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, **extra)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown names
        raise CurateError(
            f"unknown timm backbone {name!r}: {exc}",
            hint="run `python -c 'import timm; print(timm.list_models())'` for names",
        ) from exc


def make_data_config(
    model: nn.Module, in_chans: int, input_size: int | Sequence[int] | None = None
) -> dict[str, Any]:
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
        size = (
            [int(input_size), int(input_size)]
            if isinstance(input_size, int)
            else [int(s) for s in input_size]
        )
        crop_pct = 1.0  # an explicit size means: resize the whole image to it
    return {
        "input_size": [int(in_chans), *size],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "crop_pct": crop_pct,
        "crop_mode": str(cfg.get("crop_mode", "center")),
    }


def build_net(
    backbone: str,
    *,
    in_chans: int,
    embed_dim: int,
    classes: Sequence[str],
    scale: float,
    logit_scale: float,
) -> EmbeddingNet:
    """A randomly initialised :class:`EmbeddingNet` for a timm ``backbone``."""
    body = create_backbone(backbone, in_chans)
    n_features = int(body.num_features)  # type: ignore[arg-type]  # a timm attribute, not a torch one
    return EmbeddingNet(body, n_features, embed_dim, len(classes), scale, logit_scale)


def run_config(
    net: EmbeddingNet,
    *,
    backbone: str,
    classes: Sequence[str],
    in_chans: int,
    data_config: Mapping[str, Any],
    pretrained_from: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` of a run."""
    cfg: dict[str, Any] = {
        "format": FORMAT,
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
    """Read and check a run's ``config.json``: every value (:func:`check_run_config`)."""
    run = Path(run_dir)
    cfg_path = run / CONFIG_FILE
    if not run.is_dir():
        raise CurateError(
            f"run folder not found: {run}", hint="pass the --out folder of `curate finetune`"
        )
    if not cfg_path.exists() and not cfg_path.is_symlink():
        raise CurateError(
            f"{cfg_path} is missing: {run} is not a curate fine-tuning run",
            hint="pass the --out folder of a finished `curate finetune`",
        )
    cfg = read_json_file(
        cfg_path, what="run config", hint="re-run `curate finetune`", max_bytes=16 * 2**20
    )
    if not isinstance(cfg, dict):
        raise CurateError(
            f"{cfg_path} does not hold a JSON object", hint="re-run `curate finetune`"
        )
    data_config = cfg.get("data_config")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    missing += [
        f"data_config.{k}"
        for k in DATA_CONFIG_KEYS
        if not isinstance(data_config, dict) or k not in data_config
    ]
    if missing:
        raise CurateError(
            f"{cfg_path} lacks the keys {', '.join(missing)}", hint="re-run `curate finetune`"
        )
    check_run_config(cfg, cfg_path)
    return cfg


MAX_FRAMING_MARGIN = 4.0  # --framing face: the crop's side in landmark boxes, at most


def check_run_config(cfg: Mapping[str, Any], where: str | Path = CONFIG_FILE) -> None:
    """Raise a :class:`CurateError` naming the first value of a run config that is of the
    wrong type or out of range (a run folder may come from anyone: nothing it says is
    used unchecked)."""

    def bad(key: str, want: str) -> CurateError:
        value = (
            cfg.get(key)
            if "." not in key
            else (cfg.get("data_config") or {}).get(key.split(".", 1)[1])
        )
        shown = repr(value)
        return CurateError(
            f"{where}: {key} must be {want}, got {shown[:200]}", hint=_UNTRUSTED_HINT
        )

    fmt = cfg.get("format", FORMAT)
    if fmt != FORMAT:
        raise bad("format", f"{FORMAT!r} (a run of another or a newer curate)")
    check_backbone_name(cfg["backbone"], f"{where}: backbone")
    if not _is_int(cfg["embed_dim"], 1, MAX_EMBED_DIM):
        raise bad("embed_dim", f"a whole number from 1 to {MAX_EMBED_DIM:,}")
    for key in ("scale", "logit_scale"):
        if key in cfg and not (_is_positive(cfg[key]) and cfg[key] <= MAX_SCALE):
            raise bad(key, f"a positive finite number of at most {MAX_SCALE:g}")
    in_chans = cfg["in_chans"]
    if not _is_int(in_chans, 1, MAX_IN_CHANS):
        raise bad("in_chans", f"a whole number from 1 to {MAX_IN_CHANS} (1: grey, 3: RGB)")
    classes = cfg["classes"]
    if not (
        isinstance(classes, list)
        and 1 <= len(classes) <= MAX_CLASSES
        and all(isinstance(c, str) and c for c in classes)
        and len(set(classes)) == len(classes)
    ):
        raise bad("classes", f"a list of 1 to {MAX_CLASSES:,} different, non-empty class names")
    head = cfg["embed_dim"] * (len(classes) + MAX_FEATURES)
    if head > MAX_HEAD_PARAMS:
        raise CurateError(
            f"{where}: embed_dim {cfg['embed_dim']:,} with {len(classes):,} classes asks for heads of "
            f"about {head * 4 / 2**30:,.1f} GiB (at most {MAX_HEAD_PARAMS * 4 / 2**30:g} GiB)",
            hint=_UNTRUSTED_HINT,
        )
    if "kind" in cfg and cfg["kind"] not in ("triplet", "quadruplet"):
        raise bad("kind", "'triplet' or 'quadruplet'")
    if cfg.get("pretrained_from") is not None and not isinstance(cfg["pretrained_from"], str):
        raise bad("pretrained_from", "a path or null")
    framing = cfg.get("framing")
    if framing is not None and not (
        isinstance(framing, dict)
        and framing.get("used") in ("face", "full")
        and _is_positive(framing.get("margin", 1.0))
        and framing.get("margin", 1.0) <= MAX_FRAMING_MARGIN
        and isinstance(framing.get("lift", 0.0), int | float)
        and not isinstance(framing.get("lift", 0.0), bool)
        and abs(framing.get("lift", 0.0)) <= 1
    ):
        raise bad(
            "framing",
            f'{{"used": "face" or "full", "margin": a number above 0 and at most '
            f'{MAX_FRAMING_MARGIN:g}, "lift": a number from -1 to 1}} (curate finetune --framing)',
        )
    dc = cfg["data_config"]
    size = dc["input_size"]
    if not (
        isinstance(size, list)
        and len(size) == 3
        and all(_is_int(v, 1, MAX_INPUT_SIDE) for v in size)
        and size[0] == in_chans
    ):
        raise bad(
            "data_config.input_size",
            f"[in_chans ({in_chans}), height, width], sides from 1 to {MAX_INPUT_SIDE:,} pixels",
        )
    for key in ("mean", "std"):
        vals = dc[key]
        if not (
            isinstance(vals, list) and len(vals) == in_chans and all(_is_finite(v) for v in vals)
        ):
            raise bad(
                f"data_config.{key}",
                f"a list of {in_chans} finite number(s), one per input channel",
            )
    if not all(_is_positive(v) for v in dc["std"]):
        raise bad("data_config.std", "positive (an image is divided by it)")
    if dc["interpolation"] not in INTERPOLATIONS:
        raise bad("data_config.interpolation", f"one of {', '.join(INTERPOLATIONS)}")
    if not (_is_finite(dc["crop_pct"]) and 0.1 <= dc["crop_pct"] <= 2.0):
        raise bad("data_config.crop_pct", "a number from 0.1 to 2")
    if dc["crop_mode"] not in CROP_MODES:
        raise bad("data_config.crop_mode", f"one of {', '.join(CROP_MODES)}")


def _is_int(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_positive(v: object) -> bool:
    return _is_finite(v) and v > 0  # type: ignore[operator]


def torch_load(path: str | Path) -> Any:
    """A torch checkpoint read with ``weights_only=True`` (tensors and plain containers only).

    A file that holds other Python objects is refused with a message that never suggests
    ``weights_only=False``: unpickling an untrusted file can run any code.
    """
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CurateError(
            f"refused to load {p}: it holds Python objects other than tensors, and unpickling those "
            "can run code; curate reads torch checkpoints with weights_only=True only",
            hint="pass a .safetensors file, or convert the checkpoint on a machine where you trust "
            "its origin",
        ) from exc
    except Exception as exc:  # torch raises many types for a damaged file
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise CurateError(
            f"cannot read {p}: {first}",
            hint="pass a .safetensors file or a torch checkpoint of tensors",
        ) from exc


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a missing or corrupted file into a CurateError."""
    from safetensors.torch import load_file

    p = Path(path)
    if p.exists() and not p.is_file():
        raise CurateError(f"weights file {p} is not a regular file", hint="pass the right folder")
    if not p.is_file():
        raise CurateError(
            f"weights file not found: {p}",
            hint="re-run `curate finetune`, or pass the right folder",
        )
    try:
        return load_file(str(p))
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError
        raise CurateError(
            f"corrupted checkpoint {p}: {exc}",
            hint="re-run `curate finetune` (it resumes from RUN/checkpoints when they are intact)",
        ) from exc


def load_run(
    run_dir: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[EmbeddingNet, dict[str, Any]]:
    """Load a fine-tuning run: the :class:`EmbeddingNet` (in eval mode) and its config.

    Raises :class:`CurateError` when ``config.json`` or ``model.safetensors`` is missing,
    unreadable, or does not match the architecture the config describes.
    """
    run = Path(run_dir)
    cfg = read_run_config(run)
    state = load_weights_file(run / MODEL_FILE)
    net = build_net(
        cfg["backbone"],
        in_chans=cfg["in_chans"],
        embed_dim=cfg["embed_dim"],
        classes=cfg["classes"],
        scale=float(cfg["scale"]),
        logit_scale=float(cfg.get("logit_scale", 1.0)),
    )  # runs before logit_scale existed used 1
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CurateError(
            f"{run / MODEL_FILE} does not match {run / CONFIG_FILE} "
            f"(backbone {cfg['backbone']!r}, embed_dim {cfg['embed_dim']}): {str(exc)[:300]}",
            hint="the two files come from different runs; re-run `curate finetune`",
        ) from exc
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CurateError(
            f"{run / MODEL_FILE} holds NaN or infinite weights",
            hint="the run diverged; lower --lr and re-run `curate finetune`",
        )
    return net.to(device).eval(), cfg
