"""Models that ship inside the package, and the ones found in local caches.

``default_model_dir()`` is the bundled expression-aware backbone that ``curate screen``
and ``curate finetune`` use when no ``--backbone`` is given (model card:
``curate/models/ferplus_resnet10t/README.md``). Switching the default is this one constant,
:data:`DEFAULT_MODEL`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from curate.sources import RUN_CONFIG_FILE, RUN_MODEL_FILE, is_run_dir

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "ferplus_resnet10t"


@dataclass(frozen=True)
class ModelEntry:
    """One backbone that can be used offline."""

    name: str
    kind: str  # "bundled" or "hf-cache"
    location: str
    detail: str


def default_model_dir() -> Path:
    """Folder of the bundled default backbone (a curate fine-tuning run)."""
    return MODELS_DIR / DEFAULT_MODEL


def bundled_models() -> list[ModelEntry]:
    """Every curate run folder shipped inside the package."""
    out = []
    for cfg in sorted(MODELS_DIR.glob(f"*/{RUN_CONFIG_FILE}")):
        folder = cfg.parent
        if not is_run_dir(folder):
            continue
        conf = json.loads(cfg.read_text())
        size = (folder / RUN_MODEL_FILE).stat().st_size / 1e6
        default = " (default)" if folder.name == DEFAULT_MODEL else ""
        detail = (
            f"{conf.get('backbone')} -> {conf.get('embed_dim')}-d embedding, input "
            f"{'x'.join(map(str, conf.get('data_config', {}).get('input_size', [])))}, "
            f"{len(conf.get('classes', []))} classes, {size:.1f} MB{default}"
        )
        out.append(ModelEntry(folder.name, "bundled", str(folder), detail))
    return out


def cached_timm_models() -> list[ModelEntry]:
    """timm weights present in the local Hugging Face cache (usable offline)."""
    root = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    out: list[ModelEntry] = []
    if not root.is_dir():
        return out
    for repo in sorted(root.glob("models--timm--*")):
        name = repo.name.removeprefix("models--timm--")
        files = list(repo.glob("snapshots/*/*.safetensors")) + list(repo.glob("snapshots/*/*.bin"))
        if files:
            size = sum(f.stat().st_size for f in files) / 1e6
            out.append(
                ModelEntry(name, "hf-cache", str(repo), f"timm pretrained weights, {size:.1f} MB")
            )
    return out


def list_models() -> list[ModelEntry]:
    """Bundled backbones first, then timm weights found in the local cache."""
    return bundled_models() + cached_timm_models()


def find_model(name: str) -> ModelEntry | None:
    """The model :func:`list_models` lists under ``name`` (bundled first), or None."""
    return next((e for e in list_models() if e.name == name), None)


def _names_hint(what: str) -> str:
    names = ", ".join(e.name for e in list_models()) or "none found"
    return f"pass {what}, or a model name that `curate models` lists ({names})"


def resolve_run(value: str | os.PathLike[str]) -> Path:
    """A fine-tuning run folder from a path or a bundled model's name (``fer_resnet10t``).

    An existing path wins over a name. A timm backbone from the local cache has no
    expression head, so its name is a :class:`~curate.errors.CurateError` here.
    """
    from curate.errors import CurateError

    p = Path(value).expanduser()
    if p.exists():
        return p
    entry = find_model(str(value))
    if entry is not None and entry.kind == "bundled":
        return Path(entry.location)
    if entry is not None:
        raise CurateError(
            f"{value} is a timm backbone ({entry.detail}) without an expression head; "
            "this command needs a fine-tuning run",
            hint=_names_hint("the --out folder of `curate finetune`"),
        )
    from curate.sources import not_found_hint

    raise CurateError(
        f"run folder not found: {value}",
        hint=not_found_hint(str(value), _names_hint("the --out folder of `curate finetune`")),
    )


def resolve_weights(weights: str | None, backbone: str | None) -> tuple[str | None, str | None]:
    """``(backbone, weights)`` with a model name in ``weights`` resolved.

    An existing path and ``none`` are kept; the name of a bundled model becomes its run
    folder; the name of a timm model in the local cache becomes ``backbone`` with its
    cached weights (``weights`` None). Anything else is a
    :class:`~curate.errors.CurateError` naming the choices.
    """
    from curate.errors import CurateError

    if weights is None or weights.lower() == "none" or Path(weights).expanduser().exists():
        return backbone, weights
    entry = find_model(weights)
    if entry is None:
        from curate.sources import not_found_hint

        raise CurateError(
            f"weights file not found: {weights} (and no model has that name)",
            hint=not_found_hint(
                weights, _names_hint("a .safetensors/.pth file, a fine-tuning run folder, 'none'")
            ),
        )
    if entry.kind == "bundled":
        return backbone, entry.location
    if backbone is not None and backbone != entry.name:
        raise CurateError(
            f"--weights {weights} are the cached weights of {entry.name}, "
            f"not of --backbone {backbone}",
            hint=f"drop --backbone, or pass --backbone {entry.name}",
        )
    return entry.name, None
