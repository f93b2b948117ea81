"""Preprocessing, batched embedding, the cache, and weight resolution (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curate.backbone import LoadedBackbone, load_backbone
from curate.embed import build_transform, embed_batch, embed_images, embed_images_result
from curate.errors import CurateError
from curate.images import load_image
from curate.io import file_sha256

TINY = "test_resnet"  # a timm test model: 96-d features, built without any download


def _png(path: Path, seed: int, size: int = 48) -> str:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(arr, "L").save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny() -> LoadedBackbone:
    torch.set_num_threads(1)
    return load_backbone(TINY, "none")


# --- preprocessing and one batch ---------------------------------------------------------


def test_build_transform_handles_48px_grayscale(tmp_path, tiny):
    t = build_transform(tiny.data_config)
    x = t(load_image(_png(tmp_path / "x.png", 0)))
    assert x.shape == (3, 160, 160) and x.dtype == torch.float32
    one = dict(tiny.data_config, input_size=(1, 64, 64), mean=(0.5,), std=(0.25,))
    y = build_transform(one)(load_image(_png(tmp_path / "y.png", 1), in_chans=1))
    assert y.shape == (1, 64, 64)


def test_embed_batch_is_float32_and_deterministic(tiny):
    batch = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a, b = embed_batch(tiny.model, batch), embed_batch(tiny.model, batch)
    assert a.shape == (3, tiny.embed_dim) and a.dtype == np.float32
    assert np.array_equal(a, b)
    single = embed_batch(tiny.model, batch[1:2])
    assert np.allclose(single[0], a[1], atol=1e-5)


# --- weights resolution --------------------------------------------------------------------


def test_random_weights_are_flagged_and_seeded():
    a, b = load_backbone(TINY, "none", seed=3), load_backbone(TINY, "NONE", seed=3)
    assert a.random_weights and a.weights_source == "random" and a.embed_dim == 96
    assert all(
        torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )


def _saved_state(tmp_path: Path) -> tuple[dict[str, torch.Tensor], Path, Path]:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(11)
    full = timm.create_model(TINY, pretrained=False)  # with its classifier head
    state = {k: v.clone() for k, v in full.state_dict().items()}
    st = tmp_path / "w.safetensors"
    save_file(state, str(st))
    pth = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, pth)
    return state, st, pth


def test_weights_file_safetensors_and_ddp_checkpoint(tmp_path):
    state, st, pth = _saved_state(tmp_path)
    for f in (st, pth):
        lb = load_backbone(TINY, str(f))
        assert not lb.random_weights and lb.weights_source.startswith("file:")
        own = lb.model.state_dict()
        assert "fc.weight" not in own  # classifier dropped: a feature extractor
        assert all(torch.equal(own[k], state[k]) for k in own)
    assert (
        load_backbone(TINY, str(st)).weights_fingerprint
        != load_backbone(TINY, str(pth)).weights_fingerprint
    )


def test_weights_for_another_backbone_are_a_clear_error(tmp_path):
    _, st, _ = _saved_state(tmp_path)
    with pytest.raises(CurateError, match="do not fit backbone 'test_efficientnet'") as err:
        load_backbone("test_efficientnet", str(st))
    assert "--backbone" in str(err.value)
    with pytest.raises(CurateError, match="weights file not found"):
        load_backbone(TINY, str(tmp_path / "nope.safetensors"))
    with pytest.raises(CurateError, match="needs the architecture"):
        load_backbone(None, str(st))


def test_pretrained_comes_from_the_local_cache_only(tmp_path, monkeypatch):
    import huggingface_hub

    state, st, _ = _saved_state(tmp_path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torchhub"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, **kw: None)
    with pytest.raises(CurateError) as err:
        load_backbone(TINY)  # nothing cached: fails at once, no network
    msg = str(err.value)
    for way in (
        "--weights FILE",
        "--weights none",
        "huggingface-cli download timm/test_resnet",
        "--embeddings FILE",
    ):
        assert way in msg

    seen = []

    def cached(repo, name, **kw):
        seen.append((repo, name))
        return str(st) if name == "model.safetensors" else None

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cached)
    lb = load_backbone(TINY)
    assert seen[0][0] == "timm/test_resnet.r160_in1k"
    assert lb.weights_source == f"pretrained-cache:{st}" and not lb.random_weights
    assert torch.equal(lb.model.state_dict()["conv1.0.weight"], state["conv1.0.weight"])


def test_run_folder_is_loaded_with_load_run(tmp_path, monkeypatch):
    import curate.backbone

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"weights")
    net = torch.nn.Linear(3, 2)
    cfg = {
        "backbone": TINY,
        "embed_dim": 2,
        "in_chans": 1,
        "data_config": {
            "input_size": [1, 48, 48],
            "mean": [0.5],
            "std": [0.5],
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "center",
        },
    }
    calls = []
    monkeypatch.setattr(curate.backbone, "load_run", lambda d: calls.append(Path(d)) or (net, cfg))
    lb = load_backbone(None, str(run))
    assert calls == [run] and lb.model is net and lb.in_chans == 1 and lb.embed_dim == 2
    assert lb.name == TINY and lb.weights_source.startswith("run:")
    with pytest.raises(CurateError, match="does not match the run"):
        load_backbone("resnet18", str(run))


def test_no_backbone_and_no_default_model_is_a_clear_error(tmp_path, monkeypatch):
    import curate.backbone

    monkeypatch.setattr(curate.backbone, "default_model_dir", lambda: tmp_path / "not-installed")
    with pytest.raises(CurateError, match="bundled default model") as err:
        load_backbone(None)
    assert "--backbone" in str(err.value)


# --- embed_images: dedup, cache, resume ---------------------------------------------------


class _Counting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.calls, self.images = inner, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += x.shape[0]
        return self.inner(x)


def _counting(tiny: LoadedBackbone) -> LoadedBackbone:
    small = dict(tiny.data_config, input_size=(3, 32, 32))
    return LoadedBackbone(
        _Counting(tiny.model),
        small,
        tiny.name,
        tiny.weights_source,
        tiny.weights_fingerprint,
        True,
        tiny.embed_dim,
        3,
    )


def test_each_distinct_image_is_embedded_once_and_cached(tmp_path, tiny):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(5)]
    shas = [file_sha256(p) for p in paths]
    lb = _counting(tiny)
    res = embed_images_result(
        paths + paths[:2], shas + shas[:2], lb, cache_dir=tmp_path / "c", batch_size=2, workers=0
    )
    assert lb.model.images == 5 and res.n_computed == 5 and res.n_cached == 0
    assert np.array_equal(res.embeddings[5], res.embeddings[0])
    again = embed_images(paths, shas, lb, cache_dir=tmp_path / "c", batch_size=2, workers=0)
    assert lb.model.images == 5  # nothing recomputed
    assert np.array_equal(again, res.embeddings[:5])
    direct = embed_batch(
        lb.model.inner, torch.stack([build_transform(lb.data_config)(load_image(p)) for p in paths])
    )
    assert np.allclose(again, direct, atol=1e-5)


def test_embeddings_of_framed_faces_are_cached_and_read_back(tmp_path, tiny):
    """A face seen through a crop box is cached under ``sha256@box``: the second run reads
    it back (the shard check must accept those keys, not delete the shard as damaged)."""
    import warnings

    from curate.cache import DamagedShardWarning

    paths = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    shas = [file_sha256(p) for p in paths]
    boxes = [(2.0, 2.0, 14.0, 14.0), None, (0.0, 1.0, 10.0, 12.0)]
    lb = _counting(tiny)
    first = embed_images_result(
        paths, shas, lb, cache_dir=tmp_path / "c", batch_size=2, workers=0, boxes=boxes
    )
    assert lb.model.images == 3 and first.n_computed == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedShardWarning)
        again = embed_images_result(
            paths, shas, lb, cache_dir=tmp_path / "c", batch_size=2, workers=0, boxes=boxes
        )
    assert lb.model.images == 3 and again.n_cached == 3  # nothing recomputed
    assert np.array_equal(again.embeddings, first.embeddings)


def test_interrupted_run_resumes_from_the_cache(tmp_path, tiny):
    paths = [_png(tmp_path / f"{i}.png", 100 + i) for i in range(10)]
    shas = [file_sha256(p) for p in paths]
    lb = _counting(tiny)
    ticks = []

    def stop_after_two_batches(done: int, total: int) -> None:
        ticks.append(done)
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_images_result(
            paths,
            shas,
            lb,
            cache_dir=tmp_path / "c",
            batch_size=2,
            workers=0,
            progress=stop_after_two_batches,
            shard_size=2,
        )
    assert lb.model.calls == 2
    lb.model.calls = lb.model.images = 0
    res = embed_images_result(
        paths, shas, lb, cache_dir=tmp_path / "c", batch_size=2, workers=0, shard_size=2
    )
    assert (res.n_cached, res.n_computed) == (4, 6) and lb.model.images == 6
    fresh = embed_images(
        paths, shas, _counting(tiny), cache_dir=tmp_path / "fresh", batch_size=10, workers=0
    )
    assert np.allclose(res.embeddings, fresh, atol=1e-5)


def test_cache_is_keyed_by_weights_and_preprocessing(tmp_path, tiny):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    shas = [None] * 3
    lb = _counting(tiny)
    embed_images(paths, shas, lb, cache_dir=tmp_path / "c", batch_size=4, workers=0)
    other = LoadedBackbone(
        lb.model,
        dict(lb.data_config, input_size=(3, 48, 48)),
        lb.name,
        lb.weights_source,
        lb.weights_fingerprint,
        True,
        lb.embed_dim,
        3,
    )
    embed_images(paths, shas, other, cache_dir=tmp_path / "c", batch_size=4, workers=0)
    assert lb.model.images == 6
    assert len([d for d in (tmp_path / "c" / "embeddings").iterdir() if d.is_dir()]) == 2


def test_cpu_bfloat16_embeddings_have_their_own_cache_key_and_stay_close(tmp_path, tiny):
    """bfloat16 autocast on the CPU (``LoadedBackbone.cpu_bf16``) changes the arithmetic, so
    its embeddings are cached apart from the float32 ones (never read back for a float32
    run), and it changes them little."""
    from curate.embed import cache_key

    paths = [_png(tmp_path / f"{i}.png", i) for i in range(4)]
    lb = _counting(tiny)
    f32 = embed_images_result(
        paths, [None] * 4, lb, cache_dir=tmp_path / "c", batch_size=4, workers=0
    )
    half = LoadedBackbone(
        lb.model,
        lb.data_config,
        lb.name,
        lb.weights_source,
        lb.weights_fingerprint,
        True,
        lb.embed_dim,
        3,
        cpu_bf16=True,
    )
    b16 = embed_images_result(
        paths, [None] * 4, half, cache_dir=tmp_path / "c", batch_size=4, workers=0
    )
    assert b16.n_computed == 4 and lb.model.images == 8  # not read from the float32 entries
    assert cache_key(half) != cache_key(lb) and b16.cache_key != f32.cache_key
    assert not np.array_equal(b16.embeddings, f32.embeddings)  # the autocast really ran
    cos = (f32.embeddings * b16.embeddings).sum(1) / (
        np.linalg.norm(f32.embeddings, axis=1) * np.linalg.norm(b16.embeddings, axis=1)
    )
    assert cos.min() > 0.99
    again = embed_images_result(
        paths, [None] * 4, lb, cache_dir=tmp_path / "c", batch_size=4, workers=0
    )
    assert again.n_cached == 4 and np.array_equal(again.embeddings, f32.embeddings)


def test_worker_processes_give_the_same_embeddings(tmp_path, tiny):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(6)]
    lb = _counting(tiny)
    a = embed_images(paths, [None] * 6, lb, cache_dir=tmp_path / "a", batch_size=4, workers=0)
    b = embed_images(paths, [None] * 6, lb, cache_dir=tmp_path / "b", batch_size=4, workers=2)
    assert np.allclose(a, b, atol=1e-6)


def test_default_backbone_is_the_bundled_run(tmp_path):
    models = pytest.importorskip("curate.models")
    if not (Path(models.default_model_dir()) / "model.safetensors").is_file():
        pytest.skip("no bundled default model in this checkout")
    lb = load_backbone(None)
    assert lb.weights_source.startswith("run:") and not lb.random_weights
    assert (lb.in_chans, lb.embed_dim) == (1, 128)
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    emb = embed_images(paths, [None] * 3, lb, cache_dir=tmp_path / "c", workers=0)
    assert emb.shape == (3, 128) and np.isfinite(emb).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_lays_out_one_channel_batches_too(channels):
    import torch

    from curate.embed import channels_last

    x = torch.arange(2 * channels * 5 * 4, dtype=torch.float32).reshape(2, channels, 5, 4)
    y = channels_last(x)
    assert torch.equal(x, y) and y.stride(1) == 1  # NCHW in, NHWC memory out
    conv = torch.nn.Conv2d(channels, 8, 3)
    assert conv(y).is_contiguous(memory_format=torch.channels_last)
    assert channels_last(y) is y
