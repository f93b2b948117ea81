"""A small synthetic facial-expression dataset, drawn from scratch, with planted problems.

:func:`make_example` draws grayscale cartoon faces (no third-party images) so that
the quick start runs on a fresh machine with no data and no network. Each image
shows one of six expressions on one of a dozen "subjects" (each with its own face
shape, eye spacing, skin tone and hairline), with random jitter so that no two
images are alike. Planted on purpose, and recorded in the manifest:

- label noise: a share of the images carry a wrong observed ``label``; the
  ``true_label`` column keeps the drawn expression;
- side faces (head turned, one eye foreshortened) and occluded faces (a dark bar
  over the eyes or a hand-like blob over the mouth);
- exact duplicate files (byte-identical copies of another image, same label).

The same seed gives byte-identical files and manifest.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from curate.errors import CurateError
from curate.io import loads_json, read_capped, run_record, write_json, write_text

DEFAULT_CLASSES = ("angry", "happy", "neutral", "sad", "surprise", "fear")
_SUPERSAMPLE = 4  # faces are drawn this many times larger, then reduced (anti-aliasing)
_MAX_ROTATION = 6.0  # degrees, each way
_MAX_SHIFT = 0.035  # share of the image side, each way
_BG_GAP = (40.0, 100.0)  # the background is this much darker than the skin


@dataclass(frozen=True)
class Expression:
    """Facial-action parameters, in units of the face height (``H``) or width (``W``)."""

    eye_open: float  # eye height / H
    brow_raise: float  # brow above eye centre / H
    brow_tilt: float  # inner end minus outer end height / H (+: inner up, -: V shape)
    brow_arch: float  # middle of the brow raised above its ends / H
    mouth_w: float  # mouth width / W
    mouth_curve: float  # corners above the centre / H (+: smile, -: frown)
    mouth_open: float  # gap between the lips / H
    lip_w: float  # lip line thickness / H
    teeth: bool = False  # open mouth shows teeth (light) instead of a dark cavity


EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(0.060, 0.085, 0.000, 0.005, 0.36, 0.000, 0.000, 0.040),
    "happy": Expression(0.045, 0.095, 0.000, 0.012, 0.54, 0.080, 0.070, 0.032, teeth=True),
    "sad": Expression(0.050, 0.085, 0.050, 0.000, 0.36, -0.070, 0.000, 0.040),
    "surprise": Expression(0.100, 0.160, 0.000, 0.030, 0.24, 0.000, 0.180, 0.030),
    "angry": Expression(0.050, 0.045, -0.065, 0.000, 0.30, -0.015, 0.000, 0.060),
    "fear": Expression(0.100, 0.135, 0.045, 0.000, 0.44, -0.025, 0.080, 0.030),
}


@dataclass(frozen=True)
class Subject:
    """The identity of a synthetic person: what stays the same across their images."""

    name: str
    face_w: float  # face width / canvas
    face_h: float  # face height / canvas
    eye_dx: float  # half the distance between the eyes / W
    eye_y: float  # eye line above the face centre / H
    mouth_y: float  # mouth below the face centre / H
    skin: float  # skin gray level
    hair: float  # hair gray level
    hairline: float  # hairline above the face centre / H (larger: higher forehead)
    hair_tilt: float  # hairline slope / H across the face (a side parting)
    brow_w: float  # brow thickness / H
    nose_len: float  # nose length / H
    background: float  # mean background gray level (darker than the skin, as in a lit portrait)


def make_example(
    out_dir: str | Path,
    *,
    per_class: int = 40,
    classes: Sequence[str] = DEFAULT_CLASSES,
    noise: float = 0.15,
    n_subjects: int = 12,
    size: int = 48,
    seed: int = 0,
    side_faces: float = 0.05,
    occluded: float = 0.05,
    duplicates: int = 2,
) -> Path:
    """Draw a synthetic facial-expression dataset and return the path of its manifest.

    Writes ``out_dir/images/<true_label>/<subject>_<i>.png`` (8-bit grayscale,
    ``size`` x ``size``), ``out_dir/manifest.csv`` and ``out_dir/run.json``.

    Manifest columns: ``path`` (relative to ``out_dir``), ``label`` (the observed
    label: the true one, except on the planted noisy images, which carry a different
    class chosen uniformly), ``true_label``, ``is_noisy``, ``subject``,
    ``is_side_face``, ``is_occluded``, ``occluded_region`` (``eyes``, ``mouth`` or
    ``none``) and ``is_duplicate`` (the extra byte-identical copies of another image).

    Parameters
    ----------
    out_dir:
        Folder to write; it must be empty, absent, or an earlier example (which is replaced).
    per_class:
        Drawn images per true expression (duplicates come on top).
    classes:
        Expressions to draw, a subset of :data:`EXPRESSIONS`.
    noise:
        Share of each class given a wrong observed label (rounded per class).
    n_subjects:
        Number of identities; images are spread evenly over them.
    size:
        Side of the square images in pixels.
    seed:
        Same seed, byte-identical output; a different seed gives different faces.
    side_faces, occluded:
        Share of all images drawn turned, or with an occluder (disjoint from the noisy ones).
    duplicates:
        Number of extra byte-identical copies of clean images.
    """
    started = time.time()
    classes = _check_params(
        per_class, classes, noise, n_subjects, size, side_faces, occluded, duplicates
    )
    out = Path(out_dir)
    _prepare_out_dir(out)

    rng = np.random.default_rng(seed)
    subjects = [_make_subject(f"s{j + 1:02d}", rng) for j in range(n_subjects)]
    plan = _plan(per_class, classes, noise, n_subjects, side_faces, occluded, duplicates, rng)

    manifest = _draw_images(out, plan, subjects, seed=seed, size=size)
    manifest_path = write_text(
        manifest.to_csv(index=False, lineterminator="\n"), out / "manifest.csv"
    )
    params = {
        "per_class": per_class,
        "classes": list(classes),
        "noise": noise,
        "n_subjects": n_subjects,
        "size": size,
        "seed": seed,
        "side_faces": side_faces,
        "occluded": occluded,
        "duplicates": duplicates,
    }
    counts = _counts(manifest)
    write_json(
        run_record("example", params, inputs={}, counts=counts, started=started), out / "run.json"
    )
    return manifest_path


def _draw_images(
    out: Path, plan: list[dict], subjects: list[Subject], *, seed: int, size: int
) -> pd.DataFrame:
    """Write every image of ``plan`` under ``out/images`` (image ``k`` drawn from the
    generator seeded ``[seed, k]``, a duplicate copied from its original) and return the
    manifest, one row per image in plan order."""
    rows: list[dict[str, Any]] = []
    for k, row in enumerate(plan):
        rel = f"images/{row['true_label']}/{subjects[row['subject']].name}_{row['index']:04d}.png"
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if row["copy_of"] is not None:
            shutil.copyfile(out / rows[row["copy_of"]]["path"], target)
        else:
            img_rng = np.random.default_rng([seed, k])
            pixels = render_face(
                subjects[row["subject"]],
                EXPRESSIONS[row["true_label"]],
                img_rng,
                size=size,
                side=row["is_side_face"],
                occlusion=row["occluded_region"],
            )
            Image.fromarray(pixels).save(target, format="PNG")
        rows.append(
            {
                "path": rel,
                "label": row["label"],
                "true_label": row["true_label"],
                "is_noisy": row["is_noisy"],
                "subject": subjects[row["subject"]].name,
                "is_side_face": row["is_side_face"],
                "is_occluded": row["occluded_region"] != "none",
                "occluded_region": row["occluded_region"],
                "is_duplicate": row["copy_of"] is not None,
            }
        )
    return pd.DataFrame(rows)


def _counts(manifest: pd.DataFrame) -> dict[str, int]:
    """``run.json``'s counts: images, and how many of each planted problem."""
    return {
        "images": len(manifest),
        "noisy": int(manifest["is_noisy"].sum()),
        "side_faces": int(manifest["is_side_face"].sum()),
        "occluded": int(manifest["is_occluded"].sum()),
        "duplicates": int(manifest["is_duplicate"].sum()),
    }


# ---------------------------------------------------------------- checks and layout


def _check_params(
    per_class: int,
    classes: Sequence[str],
    noise: float,
    n_subjects: int,
    size: int,
    side_faces: float,
    occluded: float,
    duplicates: int,
) -> tuple[str, ...]:
    if isinstance(classes, str):
        classes = [classes]
    names = tuple(str(c).strip().lower() for c in classes)
    unknown = [c for c in names if c not in EXPRESSIONS]
    if unknown:
        raise CurateError(
            f"unknown expression(s) for the synthetic example: {', '.join(map(repr, unknown))}",
            hint=f"choose classes among {', '.join(EXPRESSIONS)}",
        )
    if len(set(names)) != len(names) or len(names) < 2:
        raise CurateError(
            f"classes must be at least two distinct expressions, got {list(classes)!r}",
            hint="pass two or more different class names",
        )
    if per_class < 2:
        raise CurateError(
            f"--per-class must be at least 2, got {per_class}", hint="use --per-class 40"
        )
    if not 0 <= noise < 1:
        raise CurateError(
            f"--noise must be in [0, 1), got {noise}", hint="use --noise 0.15 (15% wrong labels)"
        )
    for name, share in (("side_faces", side_faces), ("occluded", occluded)):
        if not 0 <= share < 1:
            raise CurateError(f"{name} must be in [0, 1), got {share}", hint=f"use {name}=0.05")
    if n_subjects < 1:
        raise CurateError(
            f"n_subjects must be at least 1, got {n_subjects}", hint="use n_subjects=12"
        )
    if size < 16:
        raise CurateError(
            f"--size must be at least 16 pixels, got {size}", hint="use --size 48 (as FER2013)"
        )
    if duplicates < 0:
        raise CurateError(f"duplicates must be >= 0, got {duplicates}", hint="use duplicates=2")
    total = per_class * len(names)
    planted = (
        len(names) * round(noise * per_class)
        + round(side_faces * total)
        + round(occluded * total)
        + duplicates
    )
    if planted > total:
        raise CurateError(
            f"cannot plant {planted} problems (noisy, side, occluded, duplicated) in {total} images",
            hint="lower --noise / side_faces / occluded, or raise --per-class",
        )
    return names


def _prepare_out_dir(out: Path) -> None:
    """Accept an absent or empty folder; replace an earlier example; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise CurateError(
            f"output path {out} is a file, not a folder", hint="choose another OUT folder"
        )
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    record = out / "run.json"
    try:
        previous = (
            loads_json(read_capped(record, 2**20)).get("command") if record.is_file() else None
        )
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != "example":
        raise CurateError(
            f"output folder {out} is not empty and does not hold an earlier example",
            hint="choose an empty or new OUT folder",
        )
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "manifest.csv").unlink(missing_ok=True)


def _make_subject(name: str, rng: np.random.Generator) -> Subject:
    skin = rng.uniform(130, 215)
    return Subject(
        name=name,
        face_w=rng.uniform(0.50, 0.64),
        face_h=rng.uniform(0.68, 0.80),
        eye_dx=rng.uniform(0.17, 0.23),
        eye_y=rng.uniform(0.06, 0.12),
        mouth_y=rng.uniform(0.22, 0.28),
        skin=skin,
        hair=rng.uniform(15, 95),
        hairline=rng.uniform(0.24, 0.36),
        hair_tilt=rng.uniform(-0.06, 0.06),
        brow_w=rng.uniform(0.030, 0.045),
        nose_len=rng.uniform(0.10, 0.16),
        background=skin - rng.uniform(_BG_GAP[0], _BG_GAP[1]),
    )


def _plan(
    per_class: int,
    classes: tuple[str, ...],
    noise: float,
    n_subjects: int,
    side_faces: float,
    occluded: float,
    duplicates: int,
    rng: np.random.Generator,
) -> list[dict]:
    """One dict per image: true and observed label, subject, planted problems."""
    rows: list[dict] = []
    for c, name in enumerate(classes):
        subject_of = rng.permutation(np.arange(per_class) % n_subjects)
        noisy = set(rng.choice(per_class, size=round(noise * per_class), replace=False).tolist())
        for i in range(per_class):
            label = name
            if i in noisy:
                label = classes[int(rng.choice([j for j in range(len(classes)) if j != c]))]
            rows.append(
                {
                    "true_label": name,
                    "label": label,
                    "is_noisy": i in noisy,
                    "subject": int(subject_of[i]),
                    "index": i,
                    "is_side_face": False,
                    "occluded_region": "none",
                    "copy_of": None,
                }
            )
    total = len(rows)
    clean = [k for k, r in enumerate(rows) if not r["is_noisy"]]
    picked = rng.permutation(clean)
    n_side, n_occ = round(side_faces * total), round(occluded * total)
    for k in picked[:n_side]:
        rows[k]["is_side_face"] = True
    for k in picked[n_side : n_side + n_occ]:
        rows[k]["occluded_region"] = "eyes" if rng.random() < 0.5 else "mouth"
    for k in sorted(picked[n_side + n_occ : n_side + n_occ + duplicates].tolist()):
        original = rows[k]
        rows.append(
            {
                **original,
                "index": per_class + sum(r["copy_of"] is not None for r in rows),
                "copy_of": k,
            }
        )
    return rows


# ---------------------------------------------------------------- drawing


def render_face(
    subject: Subject,
    expression: Expression,
    rng: np.random.Generator,
    *,
    size: int = 48,
    side: bool = False,
    occlusion: str = "none",
) -> np.ndarray:
    """Draw one face; return a ``size`` x ``size`` uint8 array.

    ``rng`` supplies the per-image jitter: expression intensity, small translation and
    rotation, brightness, contrast and Gaussian pixel noise. ``side`` turns the head;
    ``occlusion`` is ``none``, ``eyes`` (a dark bar) or ``mouth`` (a hand-like blob).
    """
    s = size * _SUPERSAMPLE
    expr = _vary(expression, rng)
    background = float(np.clip(subject.background + rng.normal(0, 8), 10, 225))
    canvas = Image.new("L", (s, s), int(background))
    draw = ImageDraw.Draw(canvas)
    yaw = float(rng.choice([-1.0, 1.0])) if side else 0.0
    geo = _Geometry(subject, s, yaw)
    _draw_head(draw, geo, subject)
    _draw_eyes(draw, geo, expr, subject)
    _draw_brows(draw, geo, expr, subject)
    _draw_nose(draw, geo, subject)
    _draw_mouth(draw, geo, expr, subject)
    if occlusion != "none":
        _draw_occluder(draw, geo, subject, occlusion, rng)

    angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
    shift = rng.uniform(-_MAX_SHIFT, _MAX_SHIFT, size=2) * s
    canvas = canvas.rotate(
        angle,
        resample=Image.Resampling.BILINEAR,
        translate=(float(shift[0]), float(shift[1])),  # type: ignore[arg-type]  # PIL takes floats
        fillcolor=int(background),
    )
    small = np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    small = _shade(small, geo, size)
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-18, 18)
    small = (small - small.mean()) * contrast + small.mean() + brightness
    small += rng.normal(0, rng.uniform(2, 6), size=small.shape)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def _vary(e: Expression, rng: np.random.Generator) -> Expression:
    """Scale the expression's distance from neutral by a random intensity, plus small noise."""
    n = EXPRESSIONS["neutral"]
    t = rng.uniform(0.75, 1.15)

    def mix(a: float, b: float, sd: float) -> float:
        return a + t * (b - a) + rng.normal(0, sd)

    return replace(
        e,
        eye_open=max(0.02, mix(n.eye_open, e.eye_open, 0.006)),
        brow_raise=mix(n.brow_raise, e.brow_raise, 0.008),
        brow_tilt=mix(n.brow_tilt, e.brow_tilt, 0.006),
        brow_arch=mix(n.brow_arch, e.brow_arch, 0.004),
        mouth_w=max(0.12, mix(n.mouth_w, e.mouth_w, 0.025)),
        mouth_curve=mix(n.mouth_curve, e.mouth_curve, 0.008),
        mouth_open=max(0.0, mix(n.mouth_open, e.mouth_open, 0.006)),
    )


class _Geometry:
    """Pixel positions of the face on the supersampled canvas."""

    def __init__(self, subject: Subject, s: int, yaw: float) -> None:
        self.s = s
        self.yaw = yaw  # -1 turned to the image left, +1 to the right, 0 frontal
        self.W = subject.face_w * s * (0.86 if yaw else 1.0)
        self.H = subject.face_h * s
        self.cx, self.cy = 0.5 * s, 0.54 * s
        self.shift = 0.15 * self.W * yaw  # features slide towards the turned side

    def x(self, dx: float, depth: float = 1.0) -> float:
        """Canvas x of a feature ``dx`` face-widths from the midline (``depth``: how far it slides)."""
        return self.cx + dx * self.W + self.shift * depth

    def y(self, dy: float) -> float:
        return self.cy + dy * self.H


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, **kw) -> None:
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


def _draw_head(draw: ImageDraw.ImageDraw, g: _Geometry, sub: Subject) -> None:
    rx, ry = g.W / 2, g.H / 2
    _ellipse(draw, g.cx, g.cy - 0.06 * g.H, rx * 1.10, ry * 0.98, fill=int(sub.hair))  # hair mass
    for side in (-1, 1):  # ears; the far one is hidden on a turned head
        if g.yaw and side != g.yaw:
            continue
        _ellipse(
            draw,
            g.cx + side * rx * 0.98 - g.shift * 0.3,
            g.y(-sub.eye_y + 0.06),
            0.07 * g.W,
            0.11 * g.H,
            fill=int(sub.skin * 0.85),
        )
    _ellipse(draw, g.cx, g.cy, rx, ry, fill=int(sub.skin))
    # hair over the forehead: the part of the face ellipse above a (slanted) hairline
    theta = np.linspace(math.pi, 2 * math.pi, 64)
    px, py = g.cx + rx * np.cos(theta), g.cy + ry * np.sin(theta)
    line = g.y(-sub.hairline) + (px - g.cx) / g.W * sub.hair_tilt * g.H
    keep = py < line
    if keep.sum() >= 3:
        pts = list(zip(px[keep].tolist(), np.minimum(py, line)[keep].tolist(), strict=True))
        draw.polygon(pts, fill=int(sub.hair))


def _draw_eyes(draw: ImageDraw.ImageDraw, g: _Geometry, e: Expression, sub: Subject) -> None:
    ew, eh = 0.085 * g.W, e.eye_open * g.H / 2
    for side in (-1, 1):
        far = bool(g.yaw) and side != g.yaw
        squeeze = 0.55 if far else 1.0  # the far eye is foreshortened on a turned head
        cx, cy = g.x(side * sub.eye_dx * (0.8 if far else 1.0)), g.y(-sub.eye_y)
        _ellipse(
            draw,
            cx,
            cy,
            ew * squeeze,
            eh,
            fill=235,
            outline=int(sub.skin * 0.35),
            width=max(1, int(0.02 * g.H)),
        )
        r = min(eh, ew * 0.45) * 0.95
        _ellipse(draw, cx + g.yaw * ew * 0.3, cy, r * squeeze, r, fill=25)


def _draw_brows(draw: ImageDraw.ImageDraw, g: _Geometry, e: Expression, sub: Subject) -> None:
    ew = 0.11 * g.W
    width = max(2, int(sub.brow_w * g.H))
    for side in (-1, 1):
        far = bool(g.yaw) and side != g.yaw
        squeeze = 0.55 if far else 1.0
        cx = g.x(side * sub.eye_dx * (0.8 if far else 1.0))
        base = g.y(-sub.eye_y - e.brow_raise)
        inner = (cx - side * ew * squeeze, base - e.brow_tilt * g.H / 2)
        outer = (cx + side * ew * squeeze, base + e.brow_tilt * g.H / 2)
        mid = ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - e.brow_arch * g.H)
        draw.line([inner, mid, outer], fill=int(sub.hair * 0.8), width=width, joint="curve")


def _draw_nose(draw: ImageDraw.ImageDraw, g: _Geometry, sub: Subject) -> None:
    shade = int(sub.skin * 0.72)
    top, tip = g.y(-sub.eye_y + 0.03), g.y(-sub.eye_y + 0.03 + sub.nose_len)
    x_tip = g.x(0.03 * g.yaw, depth=1.4)
    draw.line([(g.x(0.0), top), (x_tip, tip)], fill=shade, width=max(1, int(0.015 * g.H)))
    for side in (-1, 1):
        _ellipse(draw, g.x(side * 0.045, depth=1.3), tip, 0.022 * g.W, 0.012 * g.H, fill=shade)


def _draw_mouth(draw: ImageDraw.ImageDraw, g: _Geometry, e: Expression, sub: Subject) -> None:
    half = e.mouth_w * g.W / 2 * (0.85 if g.yaw else 1.0)
    cx, my = g.x(0.0), g.y(sub.mouth_y)
    u = np.linspace(-1, 1, 33)
    bend = my - e.mouth_curve * g.H * u**2
    gap = e.mouth_open * g.H / 2 * (1 - u**2) ** 0.6
    xs = (cx + u * half).tolist()
    upper = list(zip(xs, (bend - gap * 0.6).tolist(), strict=True))
    lower = list(zip(xs, (bend + gap * 1.4 if e.teeth else bend + gap).tolist(), strict=True))
    lip = int(sub.skin * 0.45)
    width = max(2, int(e.lip_w * g.H))
    if e.mouth_open > 0.01:
        draw.polygon(upper + lower[::-1], fill=225 if e.teeth else 30)
        draw.line(upper, fill=lip, width=width, joint="curve")
        draw.line(lower, fill=lip, width=width, joint="curve")
    else:
        draw.line(upper, fill=lip, width=width, joint="curve")


def _draw_occluder(
    draw: ImageDraw.ImageDraw, g: _Geometry, sub: Subject, region: str, rng: np.random.Generator
) -> None:
    dark = int(rng.uniform(15, 55))
    if region == "eyes":  # a dark bar (sunglasses, a strip) over both eyes
        y = g.y(-sub.eye_y - 0.02)
        bar = [g.cx - 0.52 * g.W, y - 0.08 * g.H, g.cx + 0.52 * g.W, y + 0.07 * g.H]
        draw.rounded_rectangle(bar, radius=int(0.03 * g.H), fill=dark)
        return
    # a hand-like blob over the mouth: a palm and four fingers reaching across the cheek
    palm_x, palm_y = g.cx + rng.uniform(-0.08, 0.08) * g.W, g.y(sub.mouth_y)
    _ellipse(draw, palm_x, palm_y, 0.32 * g.W, 0.13 * g.H, fill=dark)
    for f in range(4):
        fy = palm_y - 0.10 * g.H + f * 0.065 * g.H
        draw.rounded_rectangle(
            [palm_x - 0.55 * g.W, fy - 0.028 * g.H, palm_x + 0.05 * g.W, fy + 0.028 * g.H],
            radius=int(0.025 * g.H),
            fill=dark,
        )


def _shade(img: np.ndarray, g: _Geometry, size: int) -> np.ndarray:
    """Darken the picture smoothly away from the face centre (a cheap sense of volume)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    k = size / g.s
    r2 = ((xx - g.cx * k) / (g.W * k / 2)) ** 2 + ((yy - g.cy * k) / (g.H * k / 2)) ** 2
    return img * (1.0 - 0.18 * np.clip(r2, 0, 1.6) / 1.6)
