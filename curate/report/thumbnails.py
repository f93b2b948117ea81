"""Small embedded thumbnails: any image file -> a bounded ``data:`` URI."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

THUMB_SIZE = 96  # longest side in pixels; small faces are shown upscaled by CSS


class Thumbnails:
    """Encode each image once; remember why an image could not be shown."""

    def __init__(self, size: int = THUMB_SIZE) -> None:
        self.size = size
        self._cache: dict[str, tuple[str | None, str | None]] = {}
        self.bytes_total = 0

    def get(self, path: str | None) -> tuple[str | None, str | None]:
        """``(data_uri, None)`` for a readable image, else ``(None, why)``."""
        if not path:
            return None, "no path"
        if path not in self._cache:
            self._cache[path] = self._encode(Path(path))
        return self._cache[path]

    @property
    def count(self) -> int:
        return sum(1 for uri, _ in self._cache.values() if uri)

    def _encode(self, path: Path) -> tuple[str | None, str | None]:
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                small = _to_display(im, self.size)
        except FileNotFoundError:
            return None, "file not found"
        except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
            return None, f"not a readable image ({type(exc).__name__})"
        except (OSError, ValueError, SyntaxError) as exc:  # truncated / corrupt files
            return None, f"unreadable ({exc})"
        uri = _smallest_uri(small)
        self.bytes_total += len(uri)
        return uri, None


def _to_display(im: Image.Image, size: int) -> Image.Image:
    """8-bit L or RGB, longest side at most ``size``."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "P", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return im


def _smallest_uri(im: Image.Image) -> str:
    png = io.BytesIO()
    im.save(png, format="PNG", optimize=True)
    jpg = io.BytesIO()
    im.save(jpg, format="JPEG", quality=82, optimize=True)
    kind, data = ("png", png.getvalue())
    if len(jpg.getvalue()) < 0.8 * len(data):
        kind, data = ("jpeg", jpg.getvalue())
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")
