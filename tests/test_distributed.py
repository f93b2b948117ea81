"""Ray Data for the per-image stages: same caches and results as the local path, and an
interrupted Ray run resumes from the cache. A local Ray instance with 2 CPUs is started
inside the tests; everything is skipped when Ray is not installed (``curate[ray]``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import make_build

from curate.backbone import load_backbone
from curate.embed import cache_key, embed_images_result
from curate.errors import CurateError
from curate.ray_engine import RayEngine
from curate.screen import screen

ray = pytest.importorskip("ray", reason="Ray Data is not installed (pip install 'curate[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2
    )
    yield
    ray.shutdown()


def _cached(root: Path) -> dict[str, np.ndarray]:
    """Every embedding in the shared cache ``root`` (curate.cache), by image sha256."""
    shards = sorted((root / "embeddings").glob("*/shard-*.npz"))
    got: dict[str, np.ndarray] = {}
    for f in shards:
        with np.load(f) as z:
            got.update(zip(z["sha256"].tolist(), z["embedding"], strict=True))
    return got


def test_ray_screen_writes_the_local_cache_and_the_local_verdicts(tmp_path, local_ray):
    build, images, _ = make_build(tmp_path)
    screen(
        build, tmp_path / "local", skip_faces_screen=True, device="cpu", cache_dir=tmp_path / "cl"
    )
    remote = screen(
        build,
        tmp_path / "ray",
        skip_faces_screen=True,
        device="cpu",
        cache_dir=tmp_path / "cr",
        engine=RayEngine(actors=1),
    )  # one actor: the fast smoke test
    assert remote.n_embedded == len(images) and remote.n_cached == 0
    a, b = _cached(tmp_path / "cl"), _cached(tmp_path / "cr")
    assert set(a) == set(b) == set(images["sha256"])
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5
    # the same cache namespace: the Ray run's key is the local CPU run's key
    assert [p.name for p in (tmp_path / "cl" / "embeddings").iterdir()] == [
        p.name for p in (tmp_path / "cr" / "embeddings").iterdir()
    ]
    sa = pd.read_parquet(tmp_path / "local" / "scores.parquet")
    sb = pd.read_parquet(tmp_path / "ray" / "scores.parquet")
    assert sa["keep"].tolist() == sb["keep"].tolist()
    assert sa["reason"].tolist() == sb["reason"].tolist()
    assert np.allclose(sa["d_ap"], sb["d_ap"], atol=1e-5)
    assert remote.run["params"]["engine"] == "ray:auto"
    # the Ray run's cache is the local path's cache: a local re-run computes nothing
    again = screen(
        build, tmp_path / "ray", skip_faces_screen=True, device="cpu", cache_dir=tmp_path / "cr"
    )
    assert again.n_embedded == 0 and again.n_cached == len(images)


class _Interrupted(RayEngine):
    """Stops after the first batches, like a Ctrl-C in the middle of a Ray run."""

    def embed(self, keys, paths, loaded, batch_size):
        for i, got in enumerate(super().embed(keys, paths, loaded, batch_size)):
            yield got
            if i == 1:
                raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes_from_the_cache(tmp_path, local_ray):
    _, images, _ = make_build(tmp_path)
    loaded = load_backbone(None, None, device="cpu")
    paths, keys = images["path"].tolist(), images["sha256"].tolist()
    with pytest.raises(KeyboardInterrupt):
        embed_images_result(
            paths,
            keys,
            loaded,
            cache_dir=tmp_path / "c",
            batch_size=8,
            shard_size=8,
            engine=_Interrupted(actors=2),
        )
    shards = list((tmp_path / "c" / "embeddings" / cache_key(loaded)).glob("shard-*.npz"))
    assert shards, "what arrived before the interruption is cached"
    resumed = embed_images_result(
        paths, keys, loaded, cache_dir=tmp_path / "c", batch_size=8, engine=RayEngine(actors=2)
    )
    assert (
        0 < resumed.n_cached < len(images) and resumed.n_computed == len(images) - resumed.n_cached
    )
    local = embed_images_result(paths, keys, loaded, cache_dir=tmp_path / "l", batch_size=8)
    assert np.abs(resumed.embeddings - local.embeddings).max() < 1e-5


@pytest.mark.slow
def test_ray_face_screens_match_the_local_path(tmp_path, local_ray):
    from curate import build_tuples
    from curate.synthetic import make_example

    manifest = make_example(tmp_path / "data", per_class=10)
    build = build_tuples(manifest, tmp_path / "build", per_anchor=1, seed=0).out_dir
    opts = {"max_occlusion": 0.8, "no_face": "keep", "device": "cpu"}
    local = screen(build, tmp_path / "local", cache_dir=tmp_path / "cl", **opts)
    remote = screen(
        build, tmp_path / "ray", cache_dir=tmp_path / "cr", engine=RayEngine(actors=2), **opts
    )
    fa = pd.read_parquet(tmp_path / "local" / "faces.parquet")
    fb = pd.read_parquet(tmp_path / "ray" / "faces.parquet")
    pd.testing.assert_frame_equal(fa, fb)
    assert local.reasons == remote.reasons and local.n_kept == remote.n_kept
    assert list((tmp_path / "cr" / "faces").glob("*/shard-*.parquet"))


def test_ray_engine_errors_name_the_fix(local_ray):
    with pytest.raises(CurateError, match="--ray-actors must be at least 1"):
        RayEngine(actors=0)._actors(ray)
    with pytest.raises(CurateError, match="the Ray cluster has no GPUs"):
        RayEngine(device="cuda")._actors(ray)
    assert RayEngine()._actors(ray) == (2, 0)  # one CPU actor per CPU of the local instance
