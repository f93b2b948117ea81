"""Small embedded thumbnails: any image file -> a bounded ``data:`` URI, decoded by
:mod:`curate.images` (the pixels every other stage sees)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from curate.errors import CurateError
from curate.images import load_display_image

THUMB_SIZE = 96  # longest side in pixels; small faces are shown upscaled by CSS


class Thumbnails:
    """Encode each image once; remember why an image could not be shown."""

    def __init__(self, size: int = THUMB_SIZE, jpeg_quality: int | None = None) -> None:
        self.size = size
        self.jpeg_quality = jpeg_quality  # set: always JPEG at this quality (smaller files)
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
            small = load_display_image(path)  # grey files stay grey
        except CurateError as exc:  # the reason code the decoder gives: missing, unreadable, ...
            code = exc.message.split(":", 1)[0]
            return None, {"missing": "file not found"}.get(code, f"{code}: not a readable image")
        small.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        uri = _jpeg_uri(small, self.jpeg_quality) if self.jpeg_quality else _smallest_uri(small)
        self.bytes_total += len(uri)
        return uri, None


def _jpeg_uri(im: Image.Image, quality: int) -> str:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _smallest_uri(im: Image.Image) -> str:
    png = io.BytesIO()
    im.save(png, format="PNG", optimize=True)
    jpg = io.BytesIO()
    im.save(jpg, format="JPEG", quality=82, optimize=True)
    kind, data = ("png", png.getvalue())
    if len(jpg.getvalue()) < 0.8 * len(data):
        kind, data = ("jpeg", jpg.getvalue())
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")
