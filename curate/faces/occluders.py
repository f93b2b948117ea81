"""Synthetic occluders painted on aligned 48x48 faces, and the jitter applied to every
training face: the generator behind the occlusion network's synthetic stages
(:mod:`curate.faces.fit_occlusion`).

Eyeglasses (thin frames, tinted lenses, sunglasses), hands made from the face's own skin
with rounded fingers, seams and a cast shadow, hair strands and fringes, hats and caps,
medical/cloth masks and scarves, and textured objects. Labels: "occluded" when a region
is covered or 8% of the face ellipse changes; regions by the share of each region's box
that changed. Every function draws from the ``rng`` it is given, so a seed fixes a batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from curate.faces.geometry import TEMPLATE
from curate.faces.occlusion import REGIONS, standardize_faces

# Region boxes in the aligned crop (y0, y1, x0, x1) used to label synthetic occluders.
REGION_BOXES = {
    "eyes": (12, 24, 7, 41),
    "nose": (22, 34, 18, 30),
    "mouth": (32, 42, 13, 35),
    "lower face": (30, 48, 4, 44),
}
REGION_MIN_COVER = {"eyes": 0.25, "nose": 0.3, "mouth": 0.3, "lower face": 0.15}
EYES = TEMPLATE[:2]
FACE_ELLIPSE = np.zeros((48, 48), np.float32)
cv2.ellipse(FACE_ELLIPSE, (24, 26), (19, 23), 0, 0, 360, 1.0, -1)


HI = 4  # occluder masks are drawn at 4x and averaged down, for smooth edges


def _canvas() -> np.ndarray:
    return np.zeros((48 * HI, 48 * HI), np.float32)


def _down(mask: np.ndarray) -> np.ndarray:
    return cv2.resize(mask, (48, 48), interpolation=cv2.INTER_AREA)


def _ellipse(
    mask: np.ndarray,
    c: tuple[float, float],
    ax: tuple[float, float],
    ang: float,
    value: float = 1.0,
    thick: int = -1,
) -> None:
    """Draw in crop coordinates on a 48x48 mask or a :func:`_canvas` (sub-pixel precise)."""
    f = 4 * mask.shape[0] / 48  # shift=2 adds two fractional bits
    cv2.ellipse(
        mask,
        (int(round(c[0] * f)), int(round(c[1] * f))),
        (max(1, int(round(ax[0] * f))), max(1, int(round(ax[1] * f)))),
        ang,
        0,
        360,
        value,
        thick if thick < 0 else max(1, int(thick * mask.shape[0] / 48)),
        lineType=cv2.LINE_8,
        shift=2,
    )


def _texture(
    rng: np.random.Generator, donors: np.ndarray, mean: float, spread: float
) -> np.ndarray:
    """A 48x48 texture: a random donor face, shifted, flipped and re-levelled."""
    d = donors[rng.integers(len(donors))].astype(np.float32)
    d = np.roll(d, (rng.integers(-20, 20), rng.integers(-20, 20)), axis=(0, 1))
    if rng.random() < 0.5:
        d = d.T.copy()
    d = cv2.GaussianBlur(d, (0, 0), rng.uniform(0.5, 2.0))
    d = (d - d.mean()) / max(d.std(), 1.0)
    return np.clip(mean + spread * d, 0, 255)


DARK_LENSES = "dark lenses"  # glasses() says so when it painted sunglasses (not a region)


def glasses(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray, dark: bool | None = None
) -> tuple[np.ndarray, list[str]]:
    """Eyeglasses (frames, sometimes tinted) or sunglasses over both eyes; the returned
    tags are ``eyes`` (and :data:`DARK_LENSES` for sunglasses). ``dark`` forces dark
    lenses (True) or see-through ones (False); the random draws are the same either way."""
    out = img.copy()
    frame = _canvas()
    lens = _canvas()
    ax = (rng.uniform(5.0, 7.8), rng.uniform(3.5, 5.5))
    dy = rng.uniform(-1.5, 1.5)
    ang = rng.uniform(-6, 6)
    thick = int(rng.choice([1, 1, 2]))
    for ex, ey in EYES:
        c = (ex + rng.uniform(-1, 1), ey + dy)
        _ellipse(lens, c, ax, ang)
        _ellipse(frame, c, ax, ang, thick=thick)
    lx = EYES[0][0] + ax[0] - 1
    rx = EYES[1][0] - ax[0] + 1
    y = (EYES[0][1] + dy - 1) * HI
    cv2.line(frame, (int(lx * HI), int(y)), (int(rx * HI), int(y)), 1.0, thick * HI)
    for side in (0, 1):  # temples
        x0 = EYES[side][0] + (-ax[0] if side == 0 else ax[0])
        x1 = 0 if side == 0 else 47
        cv2.line(frame, (int(x0 * HI), int(y)), (x1 * HI, int(y - HI)), 1.0, thick * HI)
    frame, lens = np.clip(_down(frame) * rng.uniform(1.0, 1.6), 0, 1), _down(lens)
    kind = rng.random()
    if dark is not None:
        kind = 0.15 if dark else 0.3 + 0.7 * kind
    if kind < 0.3:  # sunglasses: dark lenses
        tone = rng.uniform(5, 70)
        out = out * (1 - lens) + lens * (tone + rng.normal(0, 4, img.shape))
    elif kind < 0.55:  # tinted lenses
        out = out * (1 - lens * rng.uniform(0.25, 0.6))
    if rng.random() < 0.3:  # glare
        g = np.zeros_like(img)
        _ellipse(g, (EYES[0][0] + rng.uniform(-3, 3), EYES[0][1] - 2), (2.5, 1.2), 30)
        out = out + g * lens * rng.uniform(40, 120)
    frame_tone = rng.uniform(0, 60) if rng.random() < 0.85 else rng.uniform(170, 250)
    out = out * (1 - frame) + frame * frame_tone
    return out, ["eyes", DARK_LENSES] if kind < 0.3 else ["eyes"]


def _skin(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 skin texture from the face's own cheeks and forehead, re-levelled."""
    y0, x0 = int(rng.choice([2, 26])), int(rng.choice([8, 28]))
    patch = img[y0 : y0 + 12, x0 : x0 + 12].astype(np.float32)
    tile = np.tile(np.concatenate([patch, patch[:, ::-1]], axis=1), (4, 2))[:48, :48]
    tile = cv2.GaussianBlur(tile, (0, 0), rng.uniform(0.8, 1.6))
    level = float(np.percentile(img[14:40, 10:38], 70)) * rng.uniform(0.9, 1.25)
    return np.clip(level + (tile - tile.mean()) * rng.uniform(0.5, 1.0), 0, 255)


def _hand_mask(
    rng: np.random.Generator, base: tuple[float, float], angle: float, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Palm behind ``base`` and 3-4 adjacent fingers pointing along ``angle``; (mask, seams)."""
    mask = _canvas()
    seams = _canvas()
    ux, uy = math.cos(angle), math.sin(angle)
    px, py = -uy, ux
    width = rng.uniform(3.0, 4.5) * scale
    n = int(rng.integers(3, 5))
    palm = (base[0] - ux * 8 * scale, base[1] - uy * 8 * scale)
    _ellipse(mask, palm, (10 * scale, width * n / 1.7), math.degrees(angle))
    for k in range(n):
        off = (k - (n - 1) / 2) * width
        length = rng.uniform(11, 18) * scale * (0.8 if k in (0, n - 1) else 1.0)
        c = (base[0] + px * off + ux * length / 2, base[1] + py * off + uy * length / 2)
        _ellipse(mask, c, (length / 2 + 1.5, width / 2), math.degrees(angle))
        _ellipse(seams, c, (length / 2 + 1.5, width / 2), math.degrees(angle), thick=1)
    if rng.random() < 0.5:  # thumb
        a = angle + rng.choice([-1, 1]) * rng.uniform(0.7, 1.2)
        c = (palm[0] + math.cos(a) * 8 * scale, palm[1] + math.sin(a) * 8 * scale)
        _ellipse(mask, c, (7 * scale, width / 2), math.degrees(a))
    return mask, seams * mask  # at 4x: see hand()


@dataclass(frozen=True)
class HandStyle:
    """Where synthetic hands go and how large they are (see :func:`hand`)."""

    places: tuple[str, ...] = ("side", "side", "side", "mouth", "chin", "eye")  # drawn uniformly
    scale: tuple[float, float] = (0.85, 1.5)
    side_x: tuple[float, float] = (-6.0, 8.0)  # base of a hand on the cheek (left side)
    side_y: tuple[float, float] = (24.0, 44.0)
    side_turn: tuple[float, float] = (-0.1, 0.7)  # radians from straight up, inwards
    both_hands: float = 0.6  # chance of the mirrored second hand


HANDS = HandStyle()
# The first fit (stage 1 of docs/faces.md; commit bc9308e): hands on one cheek mostly.
FIRST_FIT_HANDS = HandStyle(
    places=("side", "side", "mouth", "chin", "eye"),
    scale=(0.85, 1.3),
    side_x=(-2.0, 8.0),
    side_y=(26.0, 42.0),
    side_turn=(0.0, 0.7),
    both_hands=0.4,
)


def hand(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray, style: HandStyle = HANDS
) -> tuple[np.ndarray, list[str]]:
    """One or two hands of the face's own skin: on the cheeks and jaw, or over the mouth."""
    where = rng.choice(list(style.places))
    scale = rng.uniform(*style.scale)
    if where == "side":  # on the cheek, fingers up along the side of the face
        left = rng.random() < 0.5
        base = (rng.uniform(*style.side_x), rng.uniform(*style.side_y))
        angle = -math.pi / 2 + rng.uniform(*style.side_turn)  # up and inwards
        if not left:
            base, angle = (47 - base[0], base[1]), math.pi - angle
        masks = [_hand_mask(rng, base, angle, scale)]
        if rng.random() < style.both_hands:  # both hands, mirrored
            m, sm = masks[0]
            masks.append((m[:, ::-1].copy(), sm[:, ::-1].copy()))
    elif where == "mouth":
        side = rng.choice([-1, 1])
        base = (24 - side * rng.uniform(4, 12), rng.uniform(33, 41))
        masks = [_hand_mask(rng, base, 0.0 if side > 0 else math.pi, scale)]
    elif where == "chin":
        base = (rng.uniform(14, 34), rng.uniform(40, 46))
        masks = [_hand_mask(rng, base, -math.pi / 2 + rng.uniform(-0.5, 0.5), scale)]
    else:
        base = (rng.uniform(4, 44), rng.uniform(22, 30))
        masks = [_hand_mask(rng, base, -math.pi / 2 + rng.uniform(-0.6, 0.6), scale)]
    mask = np.clip(sum(m for m, _ in masks), 0, 1)
    seams = np.clip(sum(sm for _, sm in masks), 0, 1)
    # rounded fingers: bright along each finger's axis, dark in the seams between them
    inside = (mask * (1 - seams) > 0.5).astype(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3) / HI
    relief = _down(np.clip(depth / 1.8, 0, 1))
    alpha = cv2.GaussianBlur(_down(mask), (0, 0), 0.5)
    tex = _skin(img, rng) * (rng.uniform(0.6, 0.8) + rng.uniform(0.2, 0.4) * relief)
    shade = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), 48)
    tex = tex * (shade[None, :] if rng.random() < 0.5 else shade[:, None])
    shadow = np.clip(cv2.GaussianBlur(alpha, (0, 0), 2.0) - alpha, 0, 1)  # cast on the face
    out = img * (1 - rng.uniform(0.1, 0.35) * shadow)
    return out * (1 - alpha) + tex * alpha, []


def hair(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A fringe or strands of dark hair falling over the forehead and eyes."""
    out = img.copy()
    tone = rng.uniform(5, 80) if rng.random() < 0.8 else rng.uniform(150, 230)
    mask = np.zeros_like(img)
    if rng.random() < 0.6:  # solid fringe with a wavy lower edge, from one side
        cols = np.arange(48)
        depth = rng.uniform(14, 30)
        slope = rng.uniform(-0.5, 0.5)
        edge = (
            depth + slope * (cols - 24) + 2 * np.sin(cols / rng.uniform(2, 5) + rng.uniform(0, 6))
        )
        mask = (np.arange(48)[:, None] < edge[None, :]).astype(np.float32)
    for _ in range(int(rng.integers(10, 40))):  # strands
        x, y = rng.uniform(0, 48), rng.uniform(-5, 10)
        ang = rng.uniform(0.8, 2.3)
        pts = []
        for _ in range(8):
            pts.append((x, y))
            ang += rng.normal(0, 0.15)
            x, y = x + 4 * math.cos(ang), y + 4 * math.sin(ang)
        cv2.polylines(mask, [np.int32(np.array(pts))], False, 1.0, 1, lineType=cv2.LINE_AA)
    tex = tone + rng.normal(0, 12, img.shape)
    alpha = np.clip(mask * rng.uniform(0.8, 1.0), 0, 1)
    out = out * (1 - alpha) + tex * alpha
    return out, []


def hat(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A hat or cap covering the forehead down to (or over) the brows."""
    x = np.arange(48)
    low = rng.uniform(11, 22)
    edge = low - rng.uniform(0, 0.012) * (x - 24 - rng.uniform(-6, 6)) ** 2
    mask = (np.arange(48)[:, None] < edge[None, :]).astype(np.float32)
    tex = _texture(rng, donors, rng.uniform(10, 240), rng.uniform(3, 25))
    brim = np.zeros_like(img)
    for xi in x:
        yi = int(np.clip(edge[xi], 0, 47))
        brim[max(0, yi - 2) : yi, xi] = 1
    tex = tex * (1 - 0.4 * brim)
    return img * (1 - mask) + tex * mask, []


def face_mask(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A medical or cloth mask, or a scarf, over the lower face."""
    top = rng.uniform(26, 36)
    x = np.arange(48)
    half = rng.uniform(17, 23)
    top_edge = top + 0.01 * (x - 24) ** 2 * rng.uniform(0, 1)
    mask = (np.arange(48)[:, None] > top_edge[None, :]) & (np.abs(x - 24)[None, :] < half)
    mask = mask.astype(np.float32)
    tone = rng.uniform(120, 250) if rng.random() < 0.6 else rng.uniform(10, 120)
    tex = tone + rng.normal(0, 3, img.shape)
    for _ in range(int(rng.integers(0, 4))):  # folds
        y = int(rng.uniform(top + 2, 47))
        tex[y : y + 1] *= rng.uniform(0.75, 0.9)
    shade = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.1), 48)[None, :]
    tex = tex * shade
    return img * (1 - mask) + tex * mask, []


def thing(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A textured object (microphone, cup, phone, food, paper) over a random part of the face."""
    mask = np.zeros_like(img)
    c = (rng.uniform(8, 40), rng.uniform(12, 46))
    size = (rng.uniform(5, 14), rng.uniform(5, 14))
    shape = rng.integers(3)
    if shape == 0:
        _ellipse(mask, c, size, rng.uniform(0, 180))
    elif shape == 1:
        box = cv2.boxPoints(((c[0], c[1]), (2 * size[0], 2 * size[1]), rng.uniform(0, 90)))
        cv2.fillPoly(mask, [np.int32(box)], 1.0)
    else:
        pts = np.array(
            [
                (
                    c[0] + size[0] * math.cos(t) * rng.uniform(0.5, 1.3),
                    c[1] + size[1] * math.sin(t) * rng.uniform(0.5, 1.3),
                )
                for t in np.linspace(0, 2 * math.pi, 7)[:-1]
            ]
        )
        cv2.fillPoly(mask, [np.int32(pts)], 1.0)
    if rng.random() < 0.5:
        tex = _texture(rng, donors, rng.uniform(0, 255), rng.uniform(5, 40))
    else:
        g = np.linspace(0, 1, 48)
        tex = rng.uniform(0, 255) + rng.uniform(-80, 80) * (
            g[None, :] if rng.random() < 0.5 else g[:, None]
        )
        tex = tex + rng.normal(0, 5, img.shape)
    alpha = cv2.GaussianBlur(mask, (0, 0), 0.5)
    return img * (1 - alpha) + tex * alpha, []


Occluder = Callable[[np.ndarray, np.random.Generator, np.ndarray], tuple[np.ndarray, list[str]]]


def occluder_mix(hands: HandStyle = HANDS) -> tuple[Occluder, ...]:
    """The occluders drawn from, with repeats for weight: hands and eyeglasses are the
    commonest real occluders of in-the-wild faces."""
    h = functools.partial(hand, style=hands)
    return (glasses, glasses, h, h, h, h, hair, hat, face_mask, thing)


MIX = occluder_mix()


def occlude(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray, mix: Sequence[Occluder] = MIX
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one (sometimes two) occluders; return the image and the 5 targets."""
    out = img.astype(np.float32)
    forced: list[str] = []
    for _ in range(1 if rng.random() < 0.85 else 2):
        fn = mix[int(rng.integers(len(mix)))]
        out, f = fn(out, rng, donors)
        forced += f
    diff = (np.abs(out - img) > 12).astype(np.float32)
    targets = np.zeros(1 + len(REGIONS), np.float32)
    for k, name in enumerate(REGIONS):
        y0, y1, x0, x1 = REGION_BOXES[name]
        if name in forced or diff[y0:y1, x0:x1].mean() >= REGION_MIN_COVER[name]:
            targets[1 + k] = 1
    cover = (diff * FACE_ELLIPSE).sum() / FACE_ELLIPSE.sum()
    targets[0] = 1.0 if (targets[1:].any() or cover >= 0.08) else 0.0
    return np.clip(out, 0, 255), targets


def jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Alignment jitter, flips and photometric changes, for clean and occluded faces alike."""
    ang, s = rng.uniform(-8, 8), rng.uniform(0.93, 1.07)
    m = np.asarray(cv2.getRotationMatrix2D((24, 24), ang, s), dtype=np.float64)
    m[:, 2] += rng.uniform(-2, 2, 2)
    out = cv2.warpAffine(img.astype(np.float32), m, (48, 48), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0))
    out = 255 * (np.clip(out, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    out = (
        out * rng.uniform(0.8, 1.2)
        + rng.uniform(-20, 20)
        + rng.normal(0, rng.uniform(0, 5), out.shape)
    )
    return np.clip(out, 0, 255)


def make_batch(
    crops: np.ndarray,
    idx: np.ndarray,
    rng: np.random.Generator,
    donors: np.ndarray,
    pseudo: tuple[np.ndarray, np.ndarray] | None = None,
    mix: Sequence[Occluder] = MIX,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (standardised, N x 1 x 48 x 48) and targets (N x 5) for the faces ``idx``.

    Half the faces get a synthetic occluder; with ``pseudo`` (real faces an earlier fit
    finds occluded, and their targets) 40% synthetic and 10% pseudo-labelled real ones.
    Every face is jittered (:func:`jitter`)."""
    xs, ys = [], []
    synthetic = 0.5 if pseudo is None else 0.4
    for i in idx:
        img = crops[i].astype(np.float32)
        y = np.zeros(1 + len(REGIONS), np.float32)
        u = rng.random()
        if u < synthetic:
            img, y = occlude(img, rng, donors, mix)
        elif u < 0.5 and pseudo is not None:
            k = rng.integers(len(pseudo[0]))
            img, y = pseudo[0][k].astype(np.float32), pseudo[1][k]
        xs.append(jitter(img, rng))
        ys.append(y)
    return standardize_faces(np.stack(xs)), np.stack(ys)


def sunglasses(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """:func:`glasses` with dark lenses."""
    return glasses(img, rng, donors, dark=True)


def labelled_stage_mix(hands: HandStyle = HANDS) -> tuple[Occluder, ...]:
    """The occluders of the labelled stage: :func:`occluder_mix` without hats (a hat is
    not occluded by the occlusion policy unless it hides the eyes, which the painted hat
    does not say), plus two draws of :func:`sunglasses`, so that the clear-glasses output
    learns dark lenses apart (real sunglasses are rare among the hand labels)."""
    return (*(fn for fn in occluder_mix(hands) if fn is not hat), sunglasses, sunglasses)


def covered_targets(
    img: np.ndarray, rng: np.random.Generator, donors: np.ndarray, mix: Sequence[Occluder]
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic occluder and the two targets of the shipped networks
    (:data:`curate.faces.occlusion.OUTPUTS`): covered (glasses always; anything else when it
    changes 8% of the face ellipse), and clear glasses only (glasses without dark lenses)."""
    fn = mix[int(rng.integers(len(mix)))]
    out, tags = fn(img.astype(np.float32), rng, donors)
    targets = np.zeros(2, np.float32)
    if "eyes" in tags:  # glasses of any kind
        targets[0] = 1.0
        targets[1] = 0.0 if DARK_LENSES in tags else 1.0
    else:
        diff = (np.abs(out - img) > 12).astype(np.float32)
        targets[0] = 1.0 if (diff * FACE_ELLIPSE).sum() / FACE_ELLIPSE.sum() >= 0.08 else 0.0
    return np.clip(out, 0, 255), targets


# Where clothing starts below the chin in the aligned crop (rows, at the middle): the chin
# sits near the bottom edge of the template, a lowered chin a little higher.
CLOTHING_TOP = (42.0, 47.0)


def clothing(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A collar or neckline across the bottom rows of the crop, under the chin: a band of
    one random tone (dark to light, lightly textured) whose top edge curves up or down at
    the sides (V, U or straight), half the time a collar stripe of another tone along that
    edge. Not a cover of the face: fitting paints it on faces whatever their target
    (``fit_labelled(clothing=...)``), so that a dark collar under a lowered chin, which
    studio portraits show and tight FER2013 crops rarely do, stops reading as the bottom
    edge of a scarf or mask."""
    h = HI * 48
    x = (np.arange(h, dtype=np.float32) + 0.5) / HI - 24.0
    top = rng.uniform(*CLOTHING_TOP)
    bend = rng.uniform(-3.0, 5.0)  # rows the edge rises (+) or falls (-) at the sides
    shape = np.abs(x) / 24.0 if rng.random() < 0.5 else (x / 24.0) ** 2
    edge = HI * (top - bend * shape)
    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5
    below = _down((rows >= edge[None, :]).astype(np.float32))
    out = (
        img * (1 - below)
        + (rng.uniform(0, 255) + rng.normal(0, rng.uniform(0, 12), (48, 48))) * below
    )
    if rng.random() < 0.5:  # a collar stripe of another tone along the edge
        width = HI * rng.uniform(1.5, 4.0)
        stripe = _down(
            ((rows >= edge[None, :]) & (rows < edge[None, :] + width)).astype(np.float32)
        )
        out = out * (1 - stripe) + rng.uniform(0, 255) * stripe
    return out


def dressed(face: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """``face`` as float32, with :func:`clothing` painted on with probability ``share`` (no
    draw at all when ``share`` is 0: a recipe without collars is unchanged)."""
    img = face.astype(np.float32)
    if share and rng.random() < share:
        img = clothing(img, rng)
    return img


def labelled_stage_batch(
    crops: np.ndarray,
    idx: np.ndarray,
    rng: np.random.Generator,
    donors: np.ndarray,
    mix: Sequence[Occluder],
    clothing_share: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (standardised) and the two targets for the synthetic part of a labelled-stage
    batch: half the faces ``idx`` get an occluder (:func:`covered_targets`), all jittered;
    ``clothing_share`` of them (whatever their target) first get :func:`clothing`."""
    xs, ys = [], []
    for i in idx:
        img = dressed(crops[i], rng, clothing_share)
        y = np.zeros(2, np.float32)
        if rng.random() < 0.5:
            img, y = covered_targets(img, rng, donors, mix)
        xs.append(jitter(img, rng))
        ys.append(y)
    return standardize_faces(np.stack(xs)), np.stack(ys)
