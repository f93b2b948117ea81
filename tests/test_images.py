"""curate.images, the one decoder: every mode to 8-bit RGB or grey, errors that name the
file, and the face screen seeing the embedder's pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curate.embed import _ImageDataset
from curate.errors import CurateError
from curate.faces.landmarks import FaceAnalyzer, FaceResult
from curate.images import load_arrays, load_display_image, load_image, probe_image


def test_load_image_converts_every_mode(tmp_path):
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((5, 7), 100, np.uint8), "L").save(gray)
    im = load_image(gray)
    assert im.mode == "RGB" and im.size == (7, 5) and im.getpixel((0, 0)) == (100, 100, 100)
    assert load_image(gray, in_chans=1).mode == "L"

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(deep)
    assert load_image(deep, in_chans=1).getpixel((1, 1)) == 255

    rgba = tmp_path / "a.png"
    Image.new("RGBA", (3, 3), (0, 0, 0, 0)).save(rgba)  # fully transparent -> white
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)

    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(cmyk)
    r, g, b = load_image(cmyk).getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60

    pal = tmp_path / "p.png"
    Image.new("RGB", (4, 4), (10, 200, 30)).convert("P").save(pal)
    assert load_image(pal).mode == "RGB"


def test_load_display_image_keeps_the_channels_the_file_stores(tmp_path):
    """Grey files (1, L, LA, 16-bit, float) decode to L, colour ones to RGB, with the pixels
    of load_image (the report's thumbnails: one decoder, grey thumbnails stay grey)."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    colour = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    files = {
        "1.png": (Image.fromarray(grey > 128), "L"),
        "l.png": (Image.fromarray(grey, "L"), "L"),
        "la.png": (Image.fromarray(np.dstack([grey, grey[::-1]]), "LA"), "L"),
        "i16.png": (Image.fromarray(grey.astype(np.uint16) * 257), "L"),
        "f.tiff": (Image.fromarray(grey.astype(np.float32) / 3), "L"),
        "rgb.png": (Image.fromarray(colour, "RGB"), "RGB"),
        "rgba.png": (Image.fromarray(np.dstack([colour, grey]), "RGBA"), "RGB"),
        "p.png": (Image.fromarray(colour, "RGB").convert("P"), "RGB"),
        "cmyk.jpg": (Image.new("CMYK", (5, 6), (0, 255, 255, 0)), "RGB"),
    }
    for name, (im, mode) in files.items():
        im.save(tmp_path / name)
        got = load_display_image(tmp_path / name)
        assert got.mode == mode, name
        want = load_image(tmp_path / name, in_chans=1 if mode == "L" else 3)
        assert np.array_equal(np.asarray(got), np.asarray(want)), name
    with pytest.raises(CurateError, match="^missing"):
        load_display_image(tmp_path / "gone.png")


def test_load_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(CurateError, match="broken.png"):
        load_image(bad)


def test_load_errors_start_with_a_reason_code(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, code in (
        (tmp_path / "nope.png", "missing:"),
        (empty, "empty_file:"),
        (tmp_path, "missing:"),
    ):
        with pytest.raises(CurateError) as err:
            load_arrays(path)
        assert err.value.message.startswith(code) and str(path) in err.value.message


def test_probe_classifies_bytes(tmp_path):
    ok = tmp_path / "ok.png"
    Image.new("L", (6, 4), 7).save(ok)
    p = probe_image(ok.read_bytes(), max_pixels=100)
    assert (p.status, p.width, p.height, p.mode) == ("ok", 6, 4, "L")
    assert probe_image(ok.read_bytes(), max_pixels=10).status == "too_large"
    assert probe_image(b"hello, world", max_pixels=100).status == "not_an_image"
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(big)
    truncated = probe_image(big.read_bytes()[:2000], max_pixels=10_000)
    assert truncated.status == "corrupt" and "truncated" in truncated.detail


def _rgba(path):
    arr = np.zeros((6, 8, 4), np.uint8)
    arr[:, :4] = (200, 30, 60, 255)  # opaque red
    arr[:, 4:6] = (0, 0, 0, 0)  # transparent black: white once composited
    arr[:, 6:] = (0, 0, 255, 128)  # half-transparent blue
    Image.fromarray(arr, "RGBA").save(path)
    return path


def _deep(path):
    Image.fromarray(np.linspace(0, 60000, 6 * 8).reshape(6, 8).astype(np.uint16)).save(path)
    return path


def _face_screen_pixels(path):
    """What the face analysis hands to the landmarker for ``path``."""
    seen = {}
    analyzer = object.__new__(FaceAnalyzer)  # no MediaPipe needed to see the decoded pixels

    def capture(rgb, gray):
        seen.update(rgb=rgb, gray=gray)
        return FaceResult(False, "captured")

    analyzer.find_face_in_array = capture
    assert analyzer.find_face(path).detail == "captured"
    return seen["rgb"], seen["gray"]


def _embedder_pixels(path, in_chans):
    """What the embedder's dataset decodes for ``path`` (before resizing)."""
    return _ImageDataset([str(path)], in_chans, lambda im: im)[0].numpy()


@pytest.mark.parametrize("make", [_rgba, _deep], ids=["rgba", "16-bit"])
def test_face_screen_and_embedder_see_the_same_pixels(tmp_path, make):
    path = make(tmp_path / "im.png")
    rgb, gray = _face_screen_pixels(path)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8 and gray.shape == (6, 8)
    assert np.array_equal(rgb, _embedder_pixels(path, 3))
    assert np.array_equal(gray, _embedder_pixels(path, 1)[..., 0])
    if make is _rgba:
        assert (rgb[:, 4:6] == 255).all()  # alpha on white, not black
        assert tuple(rgb[0, 0]) == (200, 30, 60)
        assert tuple(rgb[0, 7]) == (127, 127, 255)  # blue at half alpha over white
    else:
        assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [
            233,
            233,
            233,
        ]  # 60000 / 257
        assert 0 < gray[3, 4] < 233  # scaled, not clipped at 255
