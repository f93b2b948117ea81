"""Shared fixtures: the optional real-data folder and small image factories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own shared cache (curate.cache), never the user's ~/.cache/curate,
    and its own Hugging Face datasets cache."""
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("curate-cache")))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(
            f"real FER data not available at {SHARED_DATA} (only present in the dev workspace)"
        )
    return SHARED_DATA


def face_png(path: Path, seed: int, size: int = 24, mode: str = "L") -> Path:
    """Write a small random-textured image (distinct content per seed)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
    im = Image.fromarray(arr, "L")
    if mode != "L":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture
def make_folder(tmp_path: Path):
    """Build ROOT/<class>/<i>.png with the given number of images per class."""

    def _make(counts: dict[str, int], root: Path | None = None, start_seed: int = 0) -> Path:
        root = root or tmp_path / "data"
        seed = start_seed
        for cls, n in counts.items():
            for i in range(n):
                face_png(root / cls / f"{i:03d}.png", seed)
                seed += 1
        return root

    return _make
