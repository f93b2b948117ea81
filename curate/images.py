"""Decode image files: the one way every stage turns a file into pixels.

:func:`probe_image` is ingest's check (does the file decode, how large is it);
:func:`load_image` gives the 8-bit ``RGB`` or ``L`` image that the embedder and
fine-tuning read, and :func:`load_arrays` the same pixels as arrays for the face
analysis. Whatever the file holds, the pixels are the same for all of them:

* the EXIF orientation is applied;
* 16-bit and 32-bit integer images are scaled to 8 bits (divided by 257 when above
  255), float images stretched from their minimum to their maximum;
* palette images are expanded, with their transparency;
* alpha (RGBA, LA, PA, a transparent palette) is composited on white;
* CMYK and every other mode is converted by Pillow, grey by its ITU-R 601-2 luma.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from curate.errors import CurateError
from curate.io import FileTooLarge, NotARegularFile, read_capped

DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: far above any face crop, far below a bomb
# Bump when the pixels of any file change: the embedding cache keys on it (docs/cache.md).
DECODER_VERSION = 1
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_HINT = "re-run curate build-tuples, which marks unreadable images"


def load_image(path: str | os.PathLike[str], in_chans: int = 3) -> Image.Image:
    """Decode an image file to 8-bit ``RGB`` (or ``L`` when ``in_chans == 1``).

    Raises
    ------
    CurateError
        When the file cannot be decoded; the message starts with the reason code
        ``missing``, ``not_a_file``, ``too_large``, ``empty_file`` or ``unreadable`` and
        names the file.
    """
    im = _decoded(path)
    target = "L" if in_chans == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the decoded image


def cut_to_box(im: Image.Image, box: Box | None) -> Image.Image:
    """``im`` cut to ``box`` (rounded to whole pixels; black outside the picture), or ``im``
    itself without one: how the embedder and fine-tuning frame a face (``--framing face``)."""
    if box is None:
        return im
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return im.crop((x0, y0, x1, y1))


def load_display_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file to 8-bit ``L`` when the file stores grey (modes ``1``, ``L``,
    ``LA``, ``I``, ``I;16*``, ``F``), else to ``RGB``: the pixels of :func:`load_image` with
    the channels the file has (the report's thumbnails). Raises as :func:`load_image`."""
    im, stored_mode = _decoded_with_mode(path)
    target = "L" if stored_mode in _GREY_MODES else "RGB"
    return im if im.mode == target else im.convert(target)


def load_arrays(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One file as (RGB uint8 HxWx3, grey uint8 HxW): exactly the pixels of
    ``load_image(path, 3)`` and ``load_image(path, 1)``; errors as :func:`load_image`."""
    im = _decoded(path)
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    grey = im if im.mode == "L" else im.convert("L")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), np.ascontiguousarray(
        np.asarray(grey, dtype=np.uint8)
    )


def load_face_arrays(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`load_arrays`, except that a file decoded to grey (mode ``L``) gives its grey
    array (H x W) for the colour one too: the same pixels, one channel instead of three
    equal ones, without making the copy (the face analysis reads one channel of grey)."""
    im = _decoded(path)
    grey = np.ascontiguousarray(
        np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.uint8)
    )
    if im.mode == "L":
        return grey, grey
    rgb = im if im.mode == "RGB" else im.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), grey


def max_file_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The most bytes an image file may have: 16 bytes per allowed pixel (four 32-bit
    channels, uncompressed) plus 16 MiB of metadata. Reads stop there, so a huge file
    cannot exhaust memory."""
    return 16 * int(max_pixels) + 16 * 2**20


def read_image_file(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of an image file: a regular file only (a FIFO or a device never blocks or
    streams), at most :func:`max_file_bytes`. Raises ``OSError`` subclasses:
    ``FileNotFoundError``, ``IsADirectoryError``, ``NotARegularFile``, ``FileTooLarge``."""
    return read_capped(path, max_file_bytes(max_pixels))


def _decoded(path: str | os.PathLike[str]) -> Image.Image:
    """The file decoded, oriented, 8-bit and without alpha (mode ``L``, ``RGB`` or another
    colour mode such as ``CMYK`` that converts directly)."""
    return _decoded_with_mode(path)[0]


def _decoded_with_mode(path: str | os.PathLike[str]) -> tuple[Image.Image, str]:
    """:func:`_decoded` and the mode the file stores its pixels in (before any conversion)."""
    p = Path(path)
    try:
        data = read_image_file(p)
    except FileNotFoundError as exc:
        raise CurateError(f"missing: {p} does not exist", hint=_HINT) from exc
    except IsADirectoryError as exc:
        raise CurateError(f"missing: {p} is a folder, not a file", hint=_HINT) from exc
    except NotARegularFile as exc:
        raise CurateError(f"not_a_file: {exc.strerror}", hint=_HINT) from exc
    except FileTooLarge as exc:
        raise CurateError(f"too_large: {exc.strerror}", hint=_HINT) from exc
    except OSError as exc:
        raise CurateError(
            f"unreadable: cannot read {p}: {exc.strerror or exc}", hint=_HINT
        ) from exc
    if not data:
        raise CurateError(f"empty_file: {p} has 0 bytes", hint=_HINT)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except UnidentifiedImageError as exc:  # its text names the in-memory buffer: say it plainly
        raise CurateError(
            f"unreadable: cannot decode image {p}: not a recognised image format", hint=_HINT
        ) from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise CurateError(f"unreadable: cannot decode image {p}: {exc}", hint=_HINT) from exc
    stored_mode = im.mode
    im = _to_8bit(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(back, rgba).convert("RGB")
    return im, stored_mode


def _to_8bit(im: Image.Image) -> Image.Image:
    if im.mode not in _DEEP_MODES:
        return im
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    elif arr.max(initial=0) > 255:
        arr = arr / 257.0  # 16-bit range -> 8-bit
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8), mode="L")


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Probe:
    """What decoding one file's bytes told :func:`probe_image`."""

    width: int | None
    height: int | None
    mode: str | None
    status: str  # "ok" or a reason code of images.parquet (docs/tables.md)
    detail: str | None


def probe_image(data: bytes, max_pixels: int) -> Probe:
    """Fully decode ``data`` (a file's bytes); never raises for a bad file.

    Status ``not_an_image`` (no image format recognised), ``too_large`` (more than
    ``max_pixels`` declared pixels: the decompression-bomb guard), ``corrupt`` (the
    decoder failed, or no pixels) or ``ok``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                mode = im.mode
                if w * h > max_pixels:
                    return Probe(
                        w,
                        h,
                        mode,
                        "too_large",
                        f"declared size {w}x{h} = {w * h:,} pixels exceeds the limit "
                        f"of {max_pixels:,} (decompression-bomb guard; raise --max-pixels)",
                    )
                im.load()
    except UnidentifiedImageError:
        head = data[:16]
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary"
        return Probe(
            None, None, None, "not_an_image", f"not a recognised image format ({kind} content)"
        )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Probe(None, None, None, "too_large", f"decompression-bomb guard: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return Probe(None, None, None, "corrupt", f"cannot decode image: {exc}")
    if w < 1 or h < 1:
        return Probe(w, h, mode, "corrupt", f"image has no pixels ({w}x{h})")
    return Probe(w, h, mode, "ok", None)
