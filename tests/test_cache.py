"""The shared content-addressed cache (curate.cache, docs/cache.md): where it lives, how it
is keyed, that it is never stale, never holds NaN, is written as a run goes, and that
worker processes end with their parent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from builders import make_build
from PIL import Image

from curate import cache
from curate.backbone import load_backbone
from curate.embed import cache_key, embed_images_result
from curate.errors import CurateError
from curate.io import file_sha256
from curate.models import default_model_dir
from curate.screen import screen

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, seed: int, size: int = 24) -> str:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").save(path)
    return str(path)


# ----------------------------------------------------------------------------- where
def test_cache_dir_from_option_env_xdg_and_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "env"))
    assert cache.resolve_cache_dir(None) == (tmp_path / "env").resolve()
    assert cache.resolve_cache_dir(tmp_path / "opt") == (tmp_path / "opt").resolve()
    assert (tmp_path / "opt").is_dir()
    monkeypatch.delenv("CURATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "curate"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "curate"
    # off: by option or by environment
    assert cache.resolve_cache_dir("none") is None
    monkeypatch.setenv("CURATE_CACHE", "none")
    assert cache.resolve_cache_dir(None) is None
    assert cache.resolve_cache_dir(tmp_path / "opt") is not None  # the option wins


def test_unusable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CurateError, match="cannot create --cache-dir") as err:
        cache.resolve_cache_dir(blocker / "sub")
    assert "--cache-dir none" in str(err.value) and "CURATE_CACHE" in str(err.value)


# ----------------------------------------------------------------------------- hashes
def test_content_hashes_name_a_changed_file(tmp_path):
    a, b = _png(tmp_path / "a.png", 0), _png(tmp_path / "b.png", 1)
    recorded = [file_sha256(a), file_sha256(b)]
    assert cache.content_hashes([a, b], recorded) == recorded
    assert cache.content_hashes([a, str(tmp_path / "gone.png")]) == [recorded[0], None]
    shutil.copy(a, b)  # b now holds a's bytes
    os.utime(b, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(CurateError, match=r"1 image\(s\) changed .*/b\.png") as err:
        cache.content_hashes([a, b], recorded)
    assert "curate build-tuples" in str(err.value)


# ----------------------------------------------------------------------------- shards
def _write_json_shard(path: Path, keys: list[str], values: list[int]) -> None:
    path.write_text(json.dumps(dict(zip(keys, values, strict=True))))


def _read_json_shard(path: Path) -> dict[str, int]:
    return json.loads(path.read_text())


def test_shard_writer_flushes_by_count_by_time_and_on_error(tmp_path):
    now = [0.0]
    w = cache.ShardWriter(
        tmp_path / "ns",
        ".json",
        _write_json_shard,
        max_items=3,
        max_seconds=10.0,
        clock=lambda: now[0],
    )
    w.add(["a", "b"], [1, 2])
    assert not list((tmp_path / "ns").glob("shard-*"))  # 2 < 3 and no time passed
    w.add(["c"], [3])
    assert len(w.written) == 1  # by count
    now[0] = 11.0
    w.add(["d"], [4])
    assert len(w.written) == 2  # by time: a killed run loses at most max_seconds of work
    with pytest.raises(KeyboardInterrupt), w:
        w.add(["e"], [5])
        raise KeyboardInterrupt
    assert len(w.written) == 3  # flushed on the way out
    got = cache.read_shards(tmp_path / "ns", ".json", _read_json_shard)
    assert got == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    assert not list((tmp_path / "ns").glob(".*.tmp"))


def test_damaged_shard_is_dropped_and_many_shards_are_compacted(tmp_path):
    ns = tmp_path / "ns"
    w = cache.ShardWriter(ns, ".json", _write_json_shard, max_items=1)
    w.add([f"k{i}" for i in range(5)], list(range(5)))  # one shard of 5
    for i in range(5, 10):
        w.add([f"k{i}"], [i])
    (ns / "shard-broken.json").write_text("{not json")
    with pytest.warns(cache.DamagedShardWarning, match="shard-broken.json"):
        assert cache.read_shards(ns, ".json", _read_json_shard, wanted={"k1", "k7"}) == {
            "k1": 1,
            "k7": 7,
        }
    assert not (ns / "shard-broken.json").exists()
    assert cache.compact(ns, ".json", _read_json_shard, _write_json_shard, at=3)
    assert len(list(ns.glob("shard-*.json"))) == 1
    assert cache.read_shards(ns, ".json", _read_json_shard) == {f"k{i}": i for i in range(10)}


# ----------------------------------------------------------------------------- embeddings
@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return load_backbone("test_resnet", "none")


def test_a_changed_image_is_never_embedded_under_its_old_hash(tmp_path):
    """Issue 16 item 9: an image replaced after build-tuples, then restored."""
    torch.set_num_threads(1)
    build, images, _ = make_build(tmp_path, per_class=3, per_anchor=2)
    kw = dict(
        backbone="test_resnet",
        weights="none",
        skip_faces_screen=True,
        workers=0,
        batch_size=8,
        cache_dir=tmp_path / "cache",
    )
    first = screen(build, tmp_path / "a", **kw)
    victim = Path(images.loc[4, "path"])
    original = victim.read_bytes()
    Image.fromarray(np.full((12, 12), 200, np.uint8), "L").save(victim)
    with pytest.raises(CurateError, match=r"changed since .*" + victim.name):
        screen(build, tmp_path / "b", **kw)
    victim.write_bytes(original)
    again = screen(build, tmp_path / "c", **kw)
    assert again.n_embedded == 0 and again.n_cached == 12
    a = pd.read_parquet(tmp_path / "a" / "scores.parquet")
    c = pd.read_parquet(tmp_path / "c" / "scores.parquet")
    assert np.array_equal(a["d_ap"], c["d_ap"]) and first.n_kept == again.n_kept


def test_wrong_recorded_hash_caches_nothing(tmp_path, tiny):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    with pytest.raises(CurateError, match="changed since"):
        embed_images_result(
            paths, ["0" * 64, None, None], tiny, cache_dir=tmp_path / "c", workers=0
        )
    assert not list((tmp_path / "c").rglob("shard-*"))


def _run_with_scale(tmp_path: Path, scale: float) -> Path:
    run = tmp_path / f"run-scale-{scale}"
    shutil.copytree(default_model_dir(), run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["scale"] = scale
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def test_scale_is_in_the_key_and_nan_vectors_are_never_cached(tmp_path):
    """Issue 16 item 9: a run config with scale NaN poisoned the bundled model's cache."""
    torch.set_num_threads(1)
    if not (default_model_dir() / "model.safetensors").is_file():
        pytest.skip("no bundled model in this checkout")
    paths = [_png(tmp_path / "img" / f"{i}.png", i, size=48) for i in range(4)]
    root = tmp_path / "cache"
    bundled = load_backbone(None)
    doubled = load_backbone(None, str(_run_with_scale(tmp_path, 2.0)))
    assert cache_key(bundled) != cache_key(doubled)  # same weights file, other vectors
    a = embed_images_result(paths, [None] * 4, bundled, cache_dir=root, workers=0).embeddings
    b = embed_images_result(paths, [None] * 4, doubled, cache_dir=root, workers=0)
    assert b.n_computed == 4 and np.allclose(b.embeddings, 2 * a, atol=1e-5)
    try:
        nan = load_backbone(None, str(_run_with_scale(tmp_path, float("nan"))))
    except CurateError:
        nan = None  # refused when the run is read: fine too, nothing reaches the cache
    if nan is not None:
        with pytest.raises(CurateError, match="NaN or infinite"):
            embed_images_result(paths, [None] * 4, nan, cache_dir=root, workers=0)
    for shard in root.rglob("shard-*.npz"):
        with np.load(shard) as z:
            assert np.isfinite(z["embedding"]).all(), shard
    again = embed_images_result(paths, [None] * 4, bundled, cache_dir=root, workers=0)
    assert again.n_cached == 4 and np.array_equal(again.embeddings, a)


def test_sigkill_during_embedding_keeps_what_was_done(tmp_path):
    """Issue 16 item 14: shards are written as the run goes, not every 2,048 images."""
    paths = [_png(tmp_path / f"{i}.png", 50 + i) for i in range(12)]
    script = textwrap.dedent(f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from curate.backbone import load_backbone
        from curate.embed import embed_images_result
        lb = load_backbone("test_resnet", "none")
        def progress(done, total):
            if done >= 6:
                os.kill(os.getpid(), signal.SIGKILL)
        embed_images_result({paths!r}, [None] * 12, lb, cache_dir={str(tmp_path / "c")!r},
                            batch_size=2, workers=0, progress=progress, shard_seconds=0.0)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]
    lb = load_backbone("test_resnet", "none")
    resumed = embed_images_result(paths, [None] * 12, lb, cache_dir=tmp_path / "c", workers=0)
    assert resumed.n_cached == 6 and resumed.n_computed == 6


# ----------------------------------------------------------------------------- workers
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_pool_workers_end_when_their_parent_is_killed(tmp_path):
    """Issue 16 item 14: a SIGKILL of curate left face workers alive."""
    script = textwrap.dedent("""
        import multiprocessing, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from curate.workers import exit_with_parent

        def pid(_):
            return os.getpid()

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=exit_with_parent)
            pids = sorted(set(pool.map(pid, range(20))))
            print(" ".join(map(str, pids)), flush=True)
            time.sleep(600)
    """)
    (tmp_path / "parent.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "worker processes outlived their killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
