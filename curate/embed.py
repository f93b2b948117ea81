"""Embed images with a backbone: decode, preprocess, batched forward, and an on-disk cache.

:func:`embed_batch` is a pure function over one batch of prepared tensors, so a
distributed engine can map it. :func:`embed_images` adds decoding in parallel worker
processes and a cache in ``cache_dir`` keyed by the image's sha256, the backbone, its
weights fingerprint, the model settings and the preprocessing (:mod:`curate.cache`;
``docs/cache.md``). The cache is written in shards as the run goes, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from PIL import Image

from curate import cache
from curate.errors import CurateError
from curate.images import DECODER_VERSION, Box, cut_to_box, load_image
from curate.limits import workers_for
from curate.runs import DATA_CONFIG_KEYS

if TYPE_CHECKING:
    from curate.backbone import LoadedBackbone

Progress = Callable[[int, int], None]
# 2: the shared cache (curate.cache), keyed also by the model settings, decoder and precision
CACHE_VERSION = 2
CACHE_KIND = "embeddings"
SHARD_SUFFIX = ".npz"


class Engine(Protocol):
    """Runs the per-image work of :func:`embed_images_result` somewhere else (a cluster)."""

    def describe(self) -> str: ...

    def embeds_on_cuda(self) -> bool: ...

    def embed(
        self, keys: list[str], paths: list[str], loaded: LoadedBackbone, batch_size: int
    ) -> Iterator[tuple[list[str], np.ndarray]]: ...


def build_transform(data_config: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """timm's evaluation preprocessing for ``data_config`` (resize, centre crop, normalise)."""
    import timm.data

    cfg = {k: data_config[k] for k in DATA_CONFIG_KEYS if k in data_config}
    if "input_size" in cfg:
        cfg["input_size"] = tuple(cfg["input_size"])
    for key in ("mean", "std"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    return timm.data.create_transform(**cfg, is_training=False)


def embed_batch(model: torch.nn.Module, batch: torch.Tensor, *, bf16: bool = False) -> np.ndarray:
    """Embed one batch of prepared tensors; returns a float32 array (batch x dim).

    Runs under ``torch.inference_mode`` with channels-last memory; on CUDA with autocast;
    on the CPU with bfloat16 autocast when ``bf16`` (:attr:`LoadedBackbone.cpu_bf16`).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.inference_mode():
        x = batch.to(device, non_blocking=True)
        if x.ndim == 4:  # channels-last convolutions are faster on CUDA and on oneDNN CPUs
            x = channels_last(x)
        if device.type == "cuda":
            with torch.autocast("cuda"):
                out = model(x)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = out.reshape(out.shape[0], -1)
        return out.float().cpu().numpy()


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N x C x H x W) laid out channels-last, so convolutions run channels-last.

    ``x.contiguous(memory_format=torch.channels_last)`` leaves a one-channel NCHW tensor
    as it is (it counts as channels-last contiguous already), and torch then runs the
    network in NCHW; strides taken from an N x H x W x C tensor are unambiguous."""
    if x.stride(1) == 1 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    n, c, h, w = x.shape
    return x.new_empty((n, h, w, c)).copy_(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@dataclass
class EmbedResult:
    """Embeddings in input order, and where they came from."""

    embeddings: np.ndarray
    n_unique: int
    n_cached: int
    n_computed: int
    cache_key: str
    cache_dir: Path | None = None  # the namespace folder, None without a cache


def embed_images(
    paths: Sequence[str],
    sha256s: Sequence[str | None],
    loaded: LoadedBackbone,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Embeddings (float32, one row per path) computed once per distinct image and cached.

    ``cache_dir`` is the shared cache root (:func:`curate.cache.resolve_cache_dir`: None
    for the default, ``"none"`` for no cache). ``progress(done, total)`` is called after
    every batch, with counts of distinct images.
    """
    return embed_images_result(
        paths,
        sha256s,
        loaded,
        cache_dir=cache_dir,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    ).embeddings


def embed_images_result(
    paths: Sequence[str],
    sha256s: Sequence[str | None],
    loaded: LoadedBackbone,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: Progress | None = None,
    shard_size: int = cache.SHARD_ITEMS,
    shard_seconds: float = cache.SHARD_SECONDS,
    engine: Engine | None = None,
    boxes: Sequence[Box | None] | None = None,
) -> EmbedResult:
    """Like :func:`embed_images`, returning counts of cached and computed images too.

    Every file is hashed first (:func:`curate.cache.content_hashes`): a file whose bytes
    differ from its recorded ``sha256s`` is a :class:`CurateError`. New embeddings are
    written to the cache every ``shard_size`` images or ``shard_seconds`` seconds, and
    when the run stops; non-finite ones are never cached (they are an error).

    ``engine`` computes the images missing from the cache elsewhere (for example
    :class:`curate.ray_engine.RayEngine`: ``engine.embed(keys, paths, loaded,
    batch_size)`` yields ``(keys, embeddings)`` batches in any order, each computed by
    :func:`prepare_batch` and :func:`embed_batch`); they are cached here as they arrive.

    ``boxes`` (one per path, or None) frames the images: the backbone sees the pixels of
    the box ``(x0, y0, x1, y1)`` of the decoded image (black outside it; a row without a
    box sees the whole image), cached under the image's sha256 and its box
    (:mod:`curate.representations.framing` makes them from the face landmarks). Framed
    images are embedded here, not on an ``engine``.
    """
    if len(paths) != len(sha256s):
        raise CurateError(f"{len(paths)} paths but {len(sha256s)} sha256 values")
    if batch_size < 1:
        raise CurateError(f"--batch-size must be at least 1, got {batch_size}")
    if boxes is not None:
        engine = None  # framed images are embedded here
    keys, box_of = _content_keys(paths, sha256s, boxes)
    first_path: dict[str, str] = {}
    for p, k in zip(paths, keys, strict=True):
        first_path.setdefault(k, str(p))
    on_cuda = engine.embeds_on_cuda() if engine is not None else None
    settings = cache_settings(loaded, on_cuda=on_cuda)
    key = cache.namespace(CACHE_KIND, settings)
    root = cache.resolve_cache_dir(cache_dir)
    folder = cache.namespace_dir(root, CACHE_KIND, key, settings) if root else None
    cached = (
        cache.read_shards(
            folder,
            SHARD_SUFFIX,
            functools.partial(_read_shard, dim=loaded.embed_dim),
            set(first_path),
        )
        if folder is not None
        else {}
    )
    todo = [k for k in first_path if k not in cached]
    total, done = len(first_path), len(first_path) - len(todo)
    if progress is not None:
        progress(done, total)
    if todo:
        writer: cache.ShardWriter[np.ndarray] | None = (
            cache.ShardWriter(
                folder, SHARD_SUFFIX, _write_shard, max_items=shard_size, max_seconds=shard_seconds
            )
            if folder is not None
            else None
        )
        try:
            computed = (
                (
                    (k, embed_batch(loaded.model, b, bf16=loaded.cpu_bf16))
                    for k, b in _batches(todo, first_path, loaded, batch_size, workers, box_of)
                )
                if engine is None
                else engine.embed(todo, [first_path[k] for k in todo], loaded, batch_size)
            )
            for batch_keys, out in computed:
                _check_finite(batch_keys, out, first_path, loaded, writer)
                cached.update(zip(batch_keys, out, strict=True))
                done += len(batch_keys)
                if progress is not None:
                    progress(done, total)
        finally:
            if writer is not None:
                writer.close()
        if folder is not None:
            cache.compact(folder, SHARD_SUFFIX, _read_shard, _write_shard)
    dim = next(iter(cached.values())).shape[0] if cached else loaded.embed_dim
    emb = np.empty((len(keys), dim), dtype=np.float32)
    for row, k in enumerate(keys):
        emb[row] = cached[k]
    return EmbedResult(emb, total, total - len(todo), len(todo), key, folder)


def _content_keys(
    paths: Sequence[str], sha256s: Sequence[str | None], boxes: Sequence[Box | None] | None
) -> tuple[list[str], dict[str, Box]]:
    """Each path's cache key (its content's sha256, checked afresh; with a box, the sha256
    and the box: :func:`box_key`) and the box of each framed key."""
    now = cache.content_hashes(paths, sha256s)
    unreadable = [p for p, h in zip(paths, now, strict=True) if h is None]
    if unreadable:
        raise CurateError(
            f"cannot read {len(unreadable):,} image(s), e.g. {unreadable[0]}",
            hint="check that the files exist and are readable, then re-run `curate build-tuples`",
        )
    keys = [str(h) for h in now]
    box_of: dict[str, Box] = {}
    if boxes is not None:
        if len(boxes) != len(paths):
            raise CurateError(f"{len(boxes)} boxes for {len(paths)} paths")
        for row, b in enumerate(boxes):
            if b is not None:
                keys[row] = box_key(keys[row], b)
                box_of[keys[row]] = tuple(float(v) for v in b)  # type: ignore[assignment]
    return keys, box_of


def _check_finite(
    batch_keys: Sequence[str],
    out: np.ndarray,
    first_path: dict[str, str],
    loaded: LoadedBackbone,
    writer: cache.ShardWriter[np.ndarray] | None,
) -> None:
    """Cache a batch's finite embeddings; a NaN or infinite one is a :class:`CurateError`."""
    finite = np.isfinite(out).all(axis=1)
    if writer is not None:
        writer.add([k for k, f in zip(batch_keys, finite, strict=True) if f], out[finite])
    if not finite.all():
        bad = [first_path[k] for k, f in zip(batch_keys, finite, strict=True) if not f]
        raise CurateError(
            f"the backbone {loaded.name} ({loaded.weights_source}) returned NaN or infinite "
            f"embeddings for {len(bad)} of {len(batch_keys)} images of a batch, e.g. {bad[0]}; "
            "they were not cached",
            hint="check the weights and the run's config.json (scale, mean, std); "
            "a diverged fine-tuning run gives NaN",
        )


def cache_settings(loaded: LoadedBackbone, *, on_cuda: bool | None = None) -> dict[str, Any]:
    """Everything that changes an embedding: the cache key is a hash of it (``docs/cache.md``).

    The backbone name, the weights' sha256, the input channels, the preprocessing, the
    model settings outside the weights file (a run's ``scale``, ``embed_dim``, ...), the
    decoder version and the arithmetic (float32, float16 autocast on CUDA, or bfloat16
    autocast on the CPU with :attr:`LoadedBackbone.cpu_bf16`). ``on_cuda``: whether the
    forward runs on CUDA (None: where ``loaded.model`` is; an engine's actors say for
    themselves, in float32 on their CPUs).
    """
    prep = {k: loaded.data_config.get(k) for k in DATA_CONFIG_KEYS}
    local = on_cuda is None
    if on_cuda is None:
        param = next(loaded.model.parameters(), None)
        on_cuda = param is not None and param.device.type == "cuda"
    bf16 = local and not on_cuda and loaded.cpu_bf16
    return {
        "v": CACHE_VERSION,
        "backbone": loaded.name,
        "weights": loaded.weights_fingerprint,
        "in_chans": loaded.in_chans,
        "preprocessing": prep,
        "model": dict(sorted(loaded.vector_settings.items())),
        "decoder": DECODER_VERSION,
        "precision": "cuda-autocast-float16"
        if on_cuda
        else "cpu-autocast-bfloat16"
        if bf16
        else "float32",
    }


def cache_key(loaded: LoadedBackbone) -> str:
    """The cache namespace of a backbone: a hash of :func:`cache_settings`."""
    return cache.namespace(CACHE_KIND, cache_settings(loaded))


class _ImageDataset(torch.utils.data.Dataset):
    """Decoded, resized and cropped images as uint8 tensors (H x W x C); normalised per batch.

    Converting to float and normalising one image at a time costs more than the resize
    itself on a busy CPU (many tiny multi-threaded ops), and uint8 batches are four
    times smaller to ship from worker processes; so that part runs once per batch.
    """

    def __init__(
        self,
        paths: list[str],
        in_chans: int,
        geometry: Callable[[Image.Image], Any],
        boxes: list[Box | None] | None = None,
    ):
        self.paths, self.in_chans, self.geometry = paths, in_chans, geometry
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> Image.Image:
        """The decoded image ``i``, cut to its box when it has one."""
        im = load_image(self.paths[i], self.in_chans)
        return cut_to_box(im, self.boxes[i] if self.boxes is not None else None)

    def __getitem__(self, i: int) -> torch.Tensor:
        arr = np.asarray(self.geometry(self.image(i)), dtype=np.uint8)
        return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy())


class _FullTransformDataset(_ImageDataset):
    """Fallback for transforms that do not end in ToTensor + Normalize: float tensors per image."""

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.geometry(self.image(i))


def split_transform(
    transform: Any,
) -> tuple[Callable[[Image.Image], Any], torch.Tensor, torch.Tensor] | None:
    """Split timm's eval transform into (PIL geometry, mean, std) when it ends in ToTensor + Normalize."""
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if (
        len(steps) < 2
        or not isinstance(steps[-2], T.ToTensor)
        or not isinstance(steps[-1], T.Normalize)
    ):
        return None
    mean = torch.as_tensor(steps[-1].mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    std = torch.as_tensor(steps[-1].std, dtype=torch.float32).reshape(1, -1, 1, 1)
    return T.Compose(steps[:-2]), mean, std


def normalize_uint8_batch(
    batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device: torch.device | None = None
) -> torch.Tensor:
    """B x H x W x C uint8 -> B x C x H x W float, as ToTensor + Normalize (on ``device``)."""
    x = batch.to(device) if device is not None else batch
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    return x.sub_(mean.to(x.device)).div_(std.to(x.device))


def default_workers(device_type: str) -> int:
    """Decoding processes: most cores on CUDA; on CPU half of them (the forward needs the rest)."""
    ncpu = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return min(8, max(ncpu - 1, 0)) if device_type == "cuda" else min(4, ncpu // 2)


def prepare_batch(
    paths: Sequence[str], loaded: LoadedBackbone, device: torch.device | None = None
) -> torch.Tensor:
    """Decode and preprocess image files into one batch for :func:`embed_batch`: the
    pixels the local loader of :func:`embed_images` produces (same decoder, same transform)."""
    ds, split = _dataset([str(p) for p in paths], loaded)
    batch = torch.stack([ds[i] for i in range(len(ds))])
    return normalize_uint8_batch(batch, split[1], split[2], device) if split is not None else batch


# a cache entry's key: the image's sha256, or what box_key makes of it and a crop box
_ENTRY_KEY = re.compile(r"[0-9a-f]{64}(@-?[0-9]+,-?[0-9]+,-?[0-9]+,-?[0-9]+)?")


def box_key(sha256: str, box: Box) -> str:
    """The cache key of an image seen through ``box``: its sha256 and the box's pixels."""
    return sha256 + "@" + ",".join(str(int(round(v))) for v in box)


def _dataset(
    files: list[str], loaded: LoadedBackbone, boxes: list[Box | None] | None = None
) -> tuple[_ImageDataset, Any]:
    transform = build_transform(loaded.data_config)
    split = split_transform(transform)
    ds = (
        _ImageDataset(files, loaded.in_chans, split[0], boxes)
        if split is not None
        else _FullTransformDataset(files, loaded.in_chans, transform, boxes)
    )
    return ds, split


def _batches(
    todo: list[str],
    first_path: dict[str, str],
    loaded: LoadedBackbone,
    batch_size: int,
    workers: int | None,
    box_of: dict[str, Box] | None = None,
):
    param = next(loaded.model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    n_workers = (
        default_workers(device.type)
        if workers is None
        else workers_for(workers, -(-len(todo) // max(batch_size, 1)))
    )  # at most the CPUs and the batches
    ds, split = _dataset(
        [first_path[k] for k in todo], loaded, [box_of.get(k) for k in todo] if box_of else None
    )
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=n_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if n_workers else None,
    )
    start = 0
    for batch in loader:
        if split is not None:
            batch = normalize_uint8_batch(batch, split[1], split[2], device)
        yield todo[start : start + len(batch)], batch
        start += len(batch)


def _read_shard(path: Path, dim: int | None = None) -> dict[str, np.ndarray]:
    """The entries of an embedding shard, validated (:class:`curate.cache.DamagedShard`):
    a 2-D float32 array of finite values, ``dim`` wide when given, one row per sha256 key."""
    with np.load(path, allow_pickle=False) as z:
        keys, emb = z["sha256"], z["embedding"]
        if keys.ndim != 1 or emb.ndim != 2 or len(keys) != len(emb) or emb.dtype != np.float32:
            raise cache.DamagedShard(
                f"{len(keys)} keys for embeddings of shape {emb.shape} and type {emb.dtype}"
            )
        if dim is not None and emb.shape[1] != dim:
            raise cache.DamagedShard(
                f"embeddings of {emb.shape[1]} dimensions, the backbone gives {dim}"
            )
        if not np.isfinite(emb).all():
            raise cache.DamagedShard("NaN or infinite embeddings")
        names = keys.tolist()
        if not all(isinstance(k, str) and _ENTRY_KEY.fullmatch(k) for k in names):
            raise cache.DamagedShard("keys that are neither sha256 digests nor box keys (box_key)")
        return dict(zip(names, emb, strict=True))


def _write_shard(path: Path, keys: list[str], arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, sha256=np.array(keys), embedding=np.asarray(arrays, dtype=np.float32))
