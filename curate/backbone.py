"""Load a backbone for embedding: a timm model as a feature extractor, with its weights.

Weights are resolved in this order, and never downloaded:

1. ``weights`` is ``"none"``: random weights (``random_weights=True``; the report says so).
2. ``weights`` is a curate fine-tuning run folder (``config.json`` + ``model.safetensors``)
   or the name of a bundled model (``fer_resnet10t``, :func:`curate.models.resolve_weights`):
   loaded with :func:`curate.runs.load_run`.
3. ``weights`` is a file: safetensors, or a torch checkpoint read with ``weights_only=True``
   (a timm state dict; ``module.`` prefixes and classifier weights are dropped).
4. no ``weights``: timm's pretrained weights, only if already in the local Hugging Face
   (or torch hub) cache.
5. otherwise a :class:`CurateError` listing the ways out.

With no backbone name the bundled default model (``curate.models.default_model_dir()``)
is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curate.errors import CurateError
from curate.io import file_sha256
from curate.models import default_model_dir, resolve_weights
from curate.runs import DATA_CONFIG_KEYS, create_backbone, load_run, torch_load
from curate.sources import is_run_dir, run_dir_problem

# config.json keys of a run that change its embeddings besides the weights and data_config
RUN_VECTOR_KEYS = ("backbone", "embed_dim", "scale", "in_chans")

_WAYS_OUT = (
    "pass --weights FILE (a .safetensors or .pth timm checkpoint, or a curate fine-tuning run "
    "folder); or --weights none for random weights (results are then meaningless); or "
    "pre-populate the Hugging Face cache on a machine with network access "
    "(huggingface-cli download {repo}); or bring your own embeddings with --embeddings FILE"
)


@dataclass
class LoadedBackbone:
    """A model ready to embed: ``model(x)`` returns one embedding row per image."""

    model: nn.Module
    data_config: dict[str, Any]
    name: str
    weights_source: str
    weights_fingerprint: str
    random_weights: bool
    embed_dim: int
    in_chans: int
    # settings outside the weights file that change a vector (a run's scale, embed_dim, ...):
    # part of the embedding cache key (curate.embed.cache_settings)
    vector_settings: dict[str, Any] = field(default_factory=dict)
    # a curate run's classification head: its classes and the run folder (None otherwise)
    head_classes: tuple[str, ...] | None = None
    run_dir: Path | None = None
    # bfloat16 autocast for the forward on the CPU (curate.embed.embed_batch; its own cache key)
    cpu_bf16: bool = False


def load_backbone(
    name: str | None, weights: str | None = None, *, device: str = "cpu", seed: int = 0
) -> LoadedBackbone:
    """Create the backbone ``name`` (a timm model name) and resolve its weights (see module doc).

    ``device`` is ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. ``seed`` fixes the
    random weights of ``weights="none"``. The model is returned in eval mode.
    """
    dev = resolve_device(device)
    name, weights = resolve_weights(
        weights, name
    )  # a name `curate models` lists works as --weights
    if name is None and weights is None:
        loaded = _load_run(bundled_model_dir(), None)
    elif weights is not None and weights.lower() == "none":
        if name is None:
            raise CurateError(
                "--weights none needs a backbone name",
                hint="pass --backbone NAME, for example --backbone resnet18",
            )
        loaded = _load_random(name, seed)
    elif weights is not None and is_run_dir(weights):
        loaded = _load_run(Path(weights), name)
    elif (
        weights is not None
        and Path(weights).is_file()
        and is_run_dir(Path(weights).parent)
        and Path(weights).name == "model.safetensors"
    ):
        loaded = _load_run(Path(weights).parent, name)
    elif weights is not None and Path(weights).is_dir():
        raise CurateError(
            f"--weights {weights} is a folder but not a curate fine-tuning run: "
            f"{run_dir_problem(weights)}",
            hint="pass a run folder (config.json and model.safetensors), or a weights file",
        )
    elif weights is not None:
        if name is None:
            raise CurateError(
                f"--weights {weights} is a weight file; curate needs the architecture",
                hint="pass --backbone NAME (the timm model the checkpoint belongs to)",
            )
        loaded = _load_file(name, Path(weights))
    else:
        assert name is not None
        loaded = _load_cached_pretrained(name)
    loaded.model.to(dev).eval()
    return loaded


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; an unknown or unavailable device is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise CurateError(
            f"unknown device {device!r}", hint="use --device auto, cpu or cuda"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CurateError(
            f"--device {device}: CUDA is not available on this machine",
            hint="use --device cpu (or --device auto)",
        )
    return dev


CPU_BF16_ENV = "CURATE_CPU_BF16"  # "0"/"1" overrides the detection (tests, other CPUs)


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX-512 BF16 or AMX, Arm BF16), so
    bfloat16 autocast speeds the network up; elsewhere oneDNN emulates it and it is slower.

    Read from ``/proc/cpuinfo``'s flags (Linux); unknown elsewhere: False. The environment
    variable ``CURATE_CPU_BF16`` (``0`` or ``1``) overrides the detection.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags = set(value.split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}) and bool(
                torch.backends.mkldnn.is_available()
            )
    return False


def autocast_precision(device: torch.device, amp: bool) -> tuple[bool, str]:
    """``(enabled, description)`` of bfloat16 autocast for ``--amp`` on ``device``.

    On CUDA it is always used; on the CPU only where :func:`cpu_bf16_supported` (where the
    CPU lacks native bfloat16, autocast would make training slower, so it stays off and
    the description says why). The description is what runs record as their ``precision``.
    """
    if not amp:
        return False, "float32 (--no-amp)"
    if device.type == "cuda":
        return True, "bfloat16 autocast (CUDA)"
    if device.type == "cpu":
        if cpu_bf16_supported():
            return True, "bfloat16 autocast (CPU with native bfloat16)"
        return False, (
            "float32: --amp is off on this CPU, which lacks native bfloat16 "
            "(AVX-512 BF16, AMX or Arm BF16), where autocast would be slower"
        )
    return False, f"float32 (no autocast on {device.type})"


def _data_config(model: nn.Module) -> dict[str, Any]:
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    return {k: cfg[k] for k in DATA_CONFIG_KEYS if k in cfg}


def _from_timm(
    model: nn.Module, name: str, source: str, fingerprint: str, random_weights: bool
) -> LoadedBackbone:
    cfg = _data_config(model)
    return LoadedBackbone(
        model=model,
        data_config=cfg,
        name=name,
        weights_source=source,
        weights_fingerprint=fingerprint,
        random_weights=random_weights,
        embed_dim=int(getattr(model, "num_features")),  # noqa: B009 (a timm attribute torch types as Tensor | Module)
        in_chans=int(cfg["input_size"][0]),
    )


def _load_random(name: str, seed: int) -> LoadedBackbone:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = create_backbone(name)
    finally:
        torch.random.set_rng_state(state)
    return _from_timm(model, name, "random", f"random-seed{seed}", True)


def _load_file(name: str, path: Path) -> LoadedBackbone:
    if not path.exists():
        raise CurateError(
            f"weights file not found: {path}",
            hint="check the path given to --weights, or use --weights none",
        )
    model = create_backbone(name)
    state = read_state_dict(path)
    _load_into(model, state, path, name)
    return _from_timm(model, name, f"file:{path.resolve()}", file_sha256(path), False)


def _load_cached_pretrained(name: str) -> LoadedBackbone:
    model = create_backbone(name)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    found = _cached_weight_file(cfg)
    if found is None:
        repo = cfg.get("hf_hub_id") or f"timm/{name}"
        raise CurateError(
            f"no pretrained weights for {name!r} in the local cache (Hugging Face hub id {repo!r}); "
            "curate never downloads weights at run time, and the hub is not reachable from here",
            hint=_WAYS_OUT.format(repo=repo),
        )
    state = read_state_dict(found)
    _load_into(model, state, found, name)
    return _from_timm(model, name, f"pretrained-cache:{found}", file_sha256(found), False)


def _cached_weight_file(cfg: dict[str, Any]) -> Path | None:
    """The local file holding timm's pretrained weights, from the HF or torch hub cache; no network."""
    repo = cfg.get("hf_hub_id")
    if repo:
        from huggingface_hub import try_to_load_from_cache  # a dependency of timm

        names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else []
        for filename in [*names, "model.safetensors", "pytorch_model.bin"]:
            hit = try_to_load_from_cache(repo, filename)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
    url = cfg.get("url")
    if url:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        if hub.is_file():
            return hub
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch checkpoint (``weights_only=True``), cleaned.

    Unwraps ``state_dict``/``model``/``state_dict_ema`` containers and strips
    ``module.`` prefixes (DataParallel / DDP).
    """
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CurateError(
            f"weights {path} is not a regular file", hint="pass a .safetensors or .pth file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except Exception as exc:  # safetensors raises several types
            raise CurateError(
                f"cannot read weights {path}: {exc}",
                hint="pass a .safetensors file or a torch checkpoint of tensors",
            ) from exc
    else:
        obj = torch_load(path)
    for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CurateError(
            f"{path} does not hold a state dict of tensors",
            hint="save the model with torch.save(model.state_dict(), FILE)",
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        bad = (missing + wrong)[:5]
        raise CurateError(
            f"weights {path} do not fit backbone {name!r}: "
            f"{len(missing)} missing and {len(wrong)} mis-shaped tensors (e.g. {', '.join(bad)})",
            hint="pass the --backbone the checkpoint was trained with",
        )
    # keys the feature extractor lacks (classifier head, EMA extras) are dropped
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def _load_run(run_dir: Path, name: str | None) -> LoadedBackbone:
    model, config = load_run(run_dir)
    backbone = str(config.get("backbone", "unknown"))
    if name is not None and name != backbone:
        raise CurateError(
            f"--backbone {name} does not match the run {run_dir}, which was trained "
            f"from {backbone!r}",
            hint="drop --backbone when --weights is a run folder",
        )
    data_config = dict(config["data_config"])
    in_chans = config["in_chans"]
    return LoadedBackbone(
        model=model,
        data_config=data_config,
        name=backbone,
        weights_source=f"run:{run_dir.resolve()}",
        weights_fingerprint=file_sha256(run_dir / "model.safetensors"),
        random_weights=False,
        embed_dim=int(config["embed_dim"]),
        in_chans=in_chans,
        vector_settings={k: config.get(k) for k in RUN_VECTOR_KEYS},
        head_classes=tuple(str(c) for c in config.get("classes") or ()) or None,
        run_dir=run_dir,
    )


def bundled_model_dir() -> Path:
    """The bundled default backbone's run folder, or a CurateError saying how to do without."""
    hint = "pass --backbone NAME and --weights FILE (or --weights none), or --embeddings FILE"
    path = Path(default_model_dir())
    if not is_run_dir(path):
        raise CurateError(
            f"the bundled default model folder {path} is missing or incomplete", hint=hint
        )
    return path
