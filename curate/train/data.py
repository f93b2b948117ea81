"""Training data for ``curate finetune``: tuples, images in memory, batches, augmentation.

A batch is a set of tuples; the unique images of those tuples are decoded once (or
taken from memory), augmented on the training device and forwarded once, and each
tuple indexes into the resulting embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from curate.embed import build_transform, split_transform
from curate.errors import CurateError
from curate.images import Box, cut_to_box, load_arrays, load_image
from curate.io import read_parquet
from curate.outdir import require_complete
from curate.sources import (
    BUILD_IMAGES_FILE,
    BUILD_TUPLES_FILE,
    RUN_JSON_FILE,
    SCREEN_KEPT_FILE,
    screen_build_dir,
    source_kind,
)
from curate.tuples import ROLES

VAL_SPLIT_NAMES = ("val", "valid", "validation")
DEFAULT_PRELOAD_BYTES = 4 * 1024**3

Progress = Callable[[str, int, int], None]


@dataclass
class TrainingData:
    """Everything ``finetune`` reads from a TUPLES folder, checked once."""

    images: pd.DataFrame  # images.parquet, ok rows only, indexed by image_id
    tuples: pd.DataFrame  # training tuples (kept.parquet or tuples.parquet)
    kind: str  # "triplet" or "quadruplet"
    classes: list[str]
    val_images: pd.DataFrame  # labelled images of the validation split (may be empty)
    build_dir: Path  # resolved
    tuples_file: Path
    extra: dict[str, Any] = field(default_factory=dict)
    build_dir_as_given: Path | None = (
        None  # as the TUPLES argument spelled it (keys older checkpoints)
    )

    @property
    def members(self) -> list[str]:
        """The member columns of the tuples (3 for triplets, 4 for quadruplets)."""
        return list(ROLES[: 4 if self.kind == "quadruplet" else 3])


def resolve_tuples_source(source: str | Path) -> tuple[Path, Path]:
    """The build-tuples folder and the tuples file of a TUPLES argument.

    ``source`` is a build-tuples folder (``tuples.parquet``) or a screen output folder
    (``kept.parquet``, whose ``run.json`` names the build folder, see
    :func:`curate.sources.screen_build_dir`).
    """
    src = Path(source).expanduser()
    hint = "pass the --out folder of `curate build-tuples` or `curate screen`"
    if not src.is_dir():
        raise CurateError(f"TUPLES folder not found: {src}", hint=hint)
    require_complete(src, what="TUPLES folder")  # a killed run's files do not belong together
    kind = source_kind(src, hint=hint)
    if kind == "screen":
        build = screen_build_dir(src)
        if build is not None:
            require_complete(build, what="build folder")
            return build, src / SCREEN_KEPT_FILE
        if (src / BUILD_IMAGES_FILE).is_file():
            return src, src / SCREEN_KEPT_FILE
        raise CurateError(
            f"{src / SCREEN_KEPT_FILE} found, but {src / RUN_JSON_FILE} names no build-tuples "
            "folder with images.parquet (params.build_dir / params.source)",
            hint="re-run `curate screen`, or pass the build-tuples folder itself",
        )
    if (src / BUILD_TUPLES_FILE).is_file():
        return src, src / BUILD_TUPLES_FILE
    raise CurateError(f"{src} holds neither tuples.parquet nor kept.parquet", hint=hint)


def load_training_data(
    source: str | Path, *, val_split: str | None = "val", check_files: bool = True
) -> TrainingData:
    """Read and check the tuples and images of a TUPLES folder.

    Training tuples are those whose ``split`` is not ``val_split``; validation images
    are the ``ok`` images whose split is ``val_split``. Raises :class:`CurateError` for
    an empty tuple set, tuples naming unknown or unusable images, missing image files,
    and validation classes that no training tuple has.
    """
    given, tuples_file = resolve_tuples_source(source)
    build_dir = given.resolve()
    images = read_parquet(build_dir / "images.parquet", what="images table")
    tuples = read_parquet(tuples_file, what="tuples table")
    for col in ("image_id", "path", "label", "status"):
        if col not in images.columns:
            raise CurateError(
                f"{build_dir / 'images.parquet'} lacks the column {col!r}",
                hint="re-run `curate build-tuples`",
            )
    kind = "quadruplet" if "negative2" in tuples.columns else "triplet"
    members = list(ROLES[: 4 if kind == "quadruplet" else 3])
    missing_cols = [c for c in members if c not in tuples.columns]
    if missing_cols:
        raise CurateError(
            f"{tuples_file} lacks the columns {missing_cols}", hint="re-run `curate build-tuples`"
        )
    if "split" in tuples.columns and val_split is not None:
        tuples = tuples[tuples["split"].isna() | (tuples["split"] != val_split)]
    if len(tuples) == 0:
        what = (
            "kept set is empty: the screen rejected every tuple"
            if tuples_file.name == "kept.parquet"
            else "no training tuples"
        )
        raise CurateError(
            f"{what} ({tuples_file})",
            hint="raise --alpha-pos/--alpha-neg in `curate screen`, use a backbone that knows faces, "
            "or train on the build-tuples folder",
        )
    tuples = tuples.reset_index(drop=True)
    images = images.set_index("image_id", drop=False)
    ids = np.unique(tuples[members].to_numpy().ravel())
    unknown = [int(i) for i in ids if i not in images.index]
    if unknown:
        raise CurateError(
            f"{tuples_file} names image_ids not in {build_dir / 'images.parquet'}: {unknown[:5]}",
            hint="the tuples come from another build; re-run `curate build-tuples`",
        )
    used = images.loc[ids]
    bad = used[used["status"] != "ok"]
    if len(bad):
        row = bad.iloc[0]
        raise CurateError(
            f"{len(bad)} tuple image(s) have status other than ok, e.g. image_id {int(row['image_id'])} "
            f"{row['path']}: {row['status']}",
            hint="re-run `curate build-tuples`",
        )
    labels = images["label"].astype(str)
    classes = sorted(set(labels.loc[ids]))
    val_images = images.iloc[0:0]
    if val_split is not None and "split" in images.columns:
        val_images = images[(images["split"] == val_split) & (images["status"] == "ok")]
        unknown_cls = sorted(set(val_images["label"].astype(str)) - set(classes))
        if unknown_cls:
            raise CurateError(
                f"validation split {val_split!r} has classes that no training tuple has: {unknown_cls}",
                hint="build tuples for every class, or pass --val-split none",
            )
    if check_files:
        check_image_files(pd.concat([used, val_images]))
    return TrainingData(
        images=images,
        tuples=tuples,
        kind=kind,
        classes=classes,
        val_images=val_images,
        build_dir=build_dir,
        tuples_file=tuples_file,
        build_dir_as_given=given,
    )


def check_image_files(images: pd.DataFrame) -> None:
    """Raise a :class:`CurateError` naming the image files that no longer exist."""
    missing = [p for p in images["path"].astype(str).unique() if not Path(p).is_file()]
    if missing:
        raise CurateError(
            f"{len(missing)} image file(s) are missing, e.g. {missing[0]}",
            hint="restore the files, or re-run `curate build-tuples` on the current folder",
        )


# ----------------------------------------------------------------------------- images


def geometry_transform(data_config: dict[str, Any]) -> Callable[[Any], Any]:
    """The embedder's evaluation transform (:func:`curate.embed.build_transform`) without
    ``ToTensor``/``Normalize``: PIL in, PIL out (normalised per batch by :func:`to_model_input`)."""
    tf = build_transform(data_config)
    split = split_transform(tf)
    if split is None:
        raise CurateError(
            f"timm's transform for {data_config} does not end in ToTensor + Normalize",
            hint="use a data_config with input_size, mean, std, interpolation, crop_pct, crop_mode",
        )
    return split[0]


def decode_image(
    path: str, in_chans: int, geometry: Callable[[Any], Any], box: Box | None = None
) -> np.ndarray:
    """One image as a ``uint8`` array ``[C, H, W]`` at the model's input size
    (decoded by :func:`curate.images.load_image`, which names a file it cannot read), cut to
    ``box`` first where given (``--framing face``)."""
    arr = np.asarray(geometry(cut_to_box(load_image(path, in_chans), box)), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = (
        arr[:, :, :in_chans]
        if arr.shape[2] >= in_chans
        else np.repeat(arr[:, :, :1], in_chans, axis=2)
    )
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_colour_and_grey(
    path: str, geometry: Callable[[Any], Any], box: Box | None = None
) -> np.ndarray:
    """One image as ``uint8`` ``[4, H, W]``: its RGB channels, then the grey channel exactly as
    :func:`decode_image` makes it for a one-channel model (each resized from its own decode;
    both cut to ``box`` first where given)."""
    rgb, grey = load_arrays(path)
    from PIL import Image

    c = np.asarray(geometry(cut_to_box(Image.fromarray(rgb, "RGB"), box)), dtype=np.uint8)
    c = c.transpose(2, 0, 1)
    g = np.asarray(geometry(cut_to_box(Image.fromarray(grey, "L"), box)), dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([c, g[None]], 0))


class ImageStore:
    """Decoded images at the model's input size, addressed by row number.

    Images are decoded once into a ``uint8`` tensor when they fit ``max_bytes``;
    otherwise each request decodes its images on a thread pool. With ``colour`` a
    one-channel model's store also keeps the RGB pixels, for augmentation that jitters
    colours before the grey conversion (``get(rows, colour=True)``); ``get(rows)`` is the
    grey image as without it. ``boxes`` (one per path, None: the whole picture) cuts each
    image to its face first (``--framing face``, :mod:`curate.train.framing`).
    """

    def __init__(
        self,
        paths: Sequence[str],
        data_config: dict[str, Any],
        *,
        max_bytes: int = DEFAULT_PRELOAD_BYTES,
        workers: int = 4,
        progress: Progress | None = None,
        colour: bool = False,
        boxes: Sequence[Box | None] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        if boxes is not None and len(boxes) != len(self.paths):
            raise CurateError(f"{len(boxes)} boxes for {len(self.paths)} images")
        self.boxes = list(boxes) if boxes is not None else [None] * len(self.paths)
        self.in_chans = int(data_config["input_size"][0])
        self.colour = bool(colour) and self.in_chans == 1
        shape = [int(s) for s in data_config["input_size"]]
        self.shape = tuple([4, *shape[1:]] if self.colour else shape)
        self._geometry = geometry_transform(data_config)
        self.workers = max(1, int(workers))
        need = len(self.paths) * math.prod(self.shape)
        self.preloaded = need <= max_bytes
        self._data: torch.Tensor | None = None
        if self.preloaded:
            self._data = self._decode_all(progress)

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, rows: Sequence[int]) -> list[np.ndarray]:
        def one(i: int) -> np.ndarray:
            if self.colour:
                return decode_colour_and_grey(self.paths[i], self._geometry, self.boxes[i])
            return decode_image(self.paths[i], self.in_chans, self._geometry, self.boxes[i])

        if len(rows) < 16 or self.workers == 1:
            return [one(i) for i in rows]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, rows))

    def _decode_all(self, progress: Progress | None) -> torch.Tensor:
        out = torch.empty((len(self.paths), *self.shape), dtype=torch.uint8)
        chunk = 1024
        for start in range(0, len(self.paths), chunk):
            rows = list(range(start, min(start + chunk, len(self.paths))))
            out[start : start + len(rows)] = torch.from_numpy(np.stack(self._decode(rows)))
            if progress is not None:
                progress("decode", start + len(rows), len(self.paths))
        return out

    def get(self, rows: np.ndarray | Sequence[int], *, colour: bool = False) -> torch.Tensor:
        """The images of ``rows`` as a ``uint8`` tensor ``[B, C, H, W]`` (``C`` the model's
        channels; 3 with ``colour`` from a colour store)."""
        idx = np.asarray(rows, dtype=np.int64)
        if self._data is not None:
            x = self._data[torch.from_numpy(idx)]
        else:
            x = torch.from_numpy(np.stack(self._decode(idx.tolist())))
        if not self.colour:
            return x
        return x[:, :3] if colour else x[:, 3:]


def to_model_input(x: torch.Tensor, data_config: dict[str, Any]) -> torch.Tensor:
    """``uint8`` or ``[0, 1]`` float images to the normalised float input of the model."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    mean = torch.tensor(data_config["mean"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(data_config["std"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


# ----------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augment:
    """Augmentation on the training device: horizontal flip, rotation, zoom (scale and
    crop, or a looser framing when zooming out) and shift, brightness and contrast, and for
    colour batches saturation and hue jitter, then (``grey``) the conversion to grey, so a
    grey network learns from the jittered colours. Strength 0 turns a part off.

    ``zoom`` (min, max) overrides ``scale``'s ``[1 - scale, 1 + scale]``: above 1 the
    face fills more of the input (a crop), below 1 less (a looser framing)."""

    flip: float = 0.5
    degrees: float = 10.0
    scale: float = 0.1
    translate: float = 0.06
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0  # max hue rotation, in turns (0.05 = 18 degrees)
    zoom: tuple[float, float] | None = None
    grey: bool = False  # colour in, grey out (ITU-R 601 weights, after the jitter)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a ``uint8`` batch ``[B, C, H, W]``; returns floats in ``[0, 1]``
        (one channel when ``grey`` and C is 3).

        Random numbers come from ``generator`` (on the CPU), so the result is the same
        for the same generator state whatever the device. The numbers are drawn in the
        same order for grey and colour batches, so a grey image gets the same geometry
        and brightness in either layout.
        """
        b = x.shape[0]
        dev = x.device
        x = x.float().div_(255.0)

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return (torch.rand(b, generator=generator) * (hi - lo) + lo).to(dev)

        flip = (torch.rand(b, generator=generator) < self.flip).to(dev)
        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180.0)
        lo, hi = self.zoom if self.zoom is not None else (1.0 - self.scale, 1.0 + self.scale)
        zoom = uniform(lo, hi)
        tx, ty = uniform(-self.translate, self.translate), uniform(-self.translate, self.translate)
        bright = uniform(1.0 - self.brightness, 1.0 + self.brightness)
        contrast = uniform(1.0 - self.contrast, 1.0 + self.contrast)
        sat = uniform(1.0 - self.saturation, 1.0 + self.saturation)
        hue = uniform(-self.hue, self.hue) * (2 * math.pi) if self.hue else None
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.degrees or self.scale or self.translate or self.zoom is not None:
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            theta = torch.stack(
                [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
            )
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
        x = x * bright.view(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean
        if x.shape[1] == 3 and hue is not None:
            x = _rotate_hue(x, hue)
        if x.shape[1] == 3 and self.saturation:
            grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
            x = (x - grey) * sat.view(-1, 1, 1, 1) + grey
        x = x.clamp_(0.0, 1.0)
        if self.grey and x.shape[1] == 3:
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        return x


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images ``[B, 3, H, W]`` by ``angle`` (radians, ``[B]``) about
    the grey axis (in YIQ: luma kept, the chroma plane rotated)."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=x.dtype,
        device=x.device,
    )
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    c, s = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], 1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq)


NO_AUGMENT = Augment(
    flip=0.0, degrees=0.0, scale=0.0, translate=0.0, brightness=0.0, contrast=0.0, saturation=0.0
)
# --augment-kind photos: prepares a network trained on face crops for colour photos and looser
# framing (stronger zoom in and out, shift and rotation, colour jitter before the grey conversion)
PHOTOS_AUGMENT = Augment(
    degrees=15.0,
    translate=0.1,
    zoom=(0.75, 1.2),
    brightness=0.3,
    contrast=0.3,
    saturation=0.5,
    hue=0.05,
)
AUGMENTS = {"light": Augment(), "photos": PHOTOS_AUGMENT}


# ----------------------------------------------------------------------------- batches


def epoch_batches(n_tuples: int, batch_tuples: int, seed: int, epoch: int) -> list[np.ndarray]:
    """A seeded shuffle of tuple rows cut into batches (the last may be smaller)."""
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n_tuples)
    return [order[i : i + batch_tuples] for i in range(0, n_tuples, batch_tuples)]


def batch_members(member_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique image rows of a batch and, per tuple member, its index into them.

    ``member_rows`` is ``[n_tuples, k]`` store rows; returns ``(unique_rows [m],
    local [n_tuples, k])`` with ``unique_rows[local] == member_rows``.
    """
    unique, inverse = np.unique(member_rows, return_inverse=True)
    return unique, inverse.reshape(member_rows.shape)


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, step): the same batch gets the same
    augmentation whether or not the run was interrupted and resumed."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + salt) % (2**63 - 1))
    return g
