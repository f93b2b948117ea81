"""Models that ship inside the package, and the ones found in local caches.

``default_model_dir()`` is the bundled expression-aware backbone that ``curate screen``
and ``curate finetune`` use when no ``--backbone`` is given (model card:
``curate/models/fer_resnet10t/README.md``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from curate.sources import RUN_CONFIG_FILE, RUN_MODEL_FILE, is_run_dir

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "fer_resnet10t"


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
        detail = (f"{conf.get('backbone')} -> {conf.get('embed_dim')}-d embedding, input "
                  f"{'x'.join(map(str, conf.get('data_config', {}).get('input_size', [])))}, "
                  f"{len(conf.get('classes', []))} classes, {size:.1f} MB{default}")
        out.append(ModelEntry(folder.name, "bundled", str(folder), detail))
    return out


def cached_timm_models() -> list[ModelEntry]:
    """timm weights present in the local Hugging Face cache (usable offline)."""
    root = Path(os.environ.get("HF_HUB_CACHE")
                or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    out = []
    if not root.is_dir():
        return out
    for repo in sorted(root.glob("models--timm--*")):
        name = repo.name.removeprefix("models--timm--")
        files = list(repo.glob("snapshots/*/*.safetensors")) + list(repo.glob("snapshots/*/*.bin"))
        if files:
            size = sum(f.stat().st_size for f in files) / 1e6
            out.append(ModelEntry(name, "hf-cache", str(repo), f"timm pretrained weights, {size:.1f} MB"))
    return out


def list_models() -> list[ModelEntry]:
    """Bundled backbones first, then timm weights found in the local cache."""
    return bundled_models() + cached_timm_models()
