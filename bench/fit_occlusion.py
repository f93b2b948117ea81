"""Fit the occlusion network shipped in ``curate/models/faces/occlusion.safetensors``.

Data: FER2013 *training* faces (``../shared/data/fer2013/train``), a seeded sample, each
run through the same landmarker and 48x48 alignment as ``curate faces``. Half of every
batch gets a synthetic occluder painted over the aligned face (eyeglasses, sunglasses,
hands made of another face's skin, hair strands and fringes, hats, masks, textured
objects); the network learns "occluded" and which regions are covered. Nothing here
reads the face-conditions benchmark.

Usage (about 12 minutes of training on one core, plus 8 minutes of landmarking)::

    python bench/fit_occlusion.py [--n-faces 12000] [--epochs 12] [--seed 0]
                                  [--crops-cache /tmp/fer_aligned.npz] [--clean-with W]

``--clean-with W`` drops from the clean pool the training faces that an earlier fit W
scores above 0.5 (real occlusions in FER2013 would otherwise be taught as clean).

The shipped weights were made in four runs (docs/faces.md, "Fitting the occlusion
weights")::

    git show bc9308e:bench/fit_occlusion.py > bench/_first_fit.py
    python bench/_first_fit.py --crops-cache /tmp/fer_aligned.npz --out /tmp/w1.safetensors
    python bench/fit_occlusion.py --crops-cache /tmp/fer_aligned.npz --clean-with /tmp/w1.safetensors --out /tmp/w2.safetensors
    python bench/fit_occlusion.py --crops-cache /tmp/fer_aligned.npz --clean-with /tmp/w2.safetensors --pseudo-labels --out /tmp/w3.safetensors
    python bench/fit_occlusion.py --crops-cache /tmp/fer_aligned.npz --clean-with /tmp/w3.safetensors --pseudo-labels

Prints the held-out AUROC on synthetic occluders after every epoch.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from curate import faces as F

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "train"
OUT = F.OCCLUSION_WEIGHTS

# Region boxes in the aligned crop (y0, y1, x0, x1) used to label synthetic occluders.
REGION_BOXES = {
    "eyes": (12, 24, 7, 41),
    "nose": (22, 34, 18, 30),
    "mouth": (32, 42, 13, 35),
    "lower face": (30, 48, 4, 44),
}
REGION_MIN_COVER = {"eyes": 0.25, "nose": 0.3, "mouth": 0.3, "lower face": 0.15}
EYES = F.TEMPLATE[:2]
FACE_ELLIPSE = np.zeros((48, 48), np.float32)
cv2.ellipse(FACE_ELLIPSE, (24, 26), (19, 23), 0, 0, 360, 1.0, -1)


# ----------------------------------------------------------------------------- data
def aligned_fer_faces(n: int, seed: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Aligned 48x48 crops of ``n`` seeded FER2013 training faces (faces found only) and
    their paths relative to the train folder (``happy/Training_123.jpg``)."""
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if "paths" in z:
            return z["crops"][z["found"]], z["paths"][z["found"]]
        print(f"{cache} has no paths (an older cache): landmarking again")
    paths = sorted(DATA.rglob("*.jpg"))
    idx = np.random.default_rng(seed).choice(len(paths), n, replace=False)
    analyzer = F.FaceAnalyzer(F.resolve_face_model())
    crops, found = [], []
    try:
        for i in sorted(idx):
            r = analyzer.find_face(paths[i])
            found.append(r.face_found)
            crops.append(r.aligned if r.aligned is not None else np.zeros((48, 48), np.uint8))
    finally:
        analyzer.close()
    crops_a, found_a = np.stack(crops), np.array(found)
    rel = np.array([paths[i].relative_to(DATA).as_posix() for i in sorted(idx)])
    if cache is not None:
        np.savez_compressed(cache, crops=crops_a, found=found_a, paths=rel)
    return crops_a[found_a], rel[found_a]


# ----------------------------------------------------------------------------- occluders
HI = 4  # occluder masks are drawn at 4x and averaged down, for smooth edges


def _canvas() -> np.ndarray:
    return np.zeros((48 * HI, 48 * HI), np.float32)


def _down(mask: np.ndarray) -> np.ndarray:
    return cv2.resize(mask, (48, 48), interpolation=cv2.INTER_AREA)


def _ellipse(mask: np.ndarray, c: tuple[float, float], ax: tuple[float, float], ang: float,
             value: float = 1.0, thick: int = -1) -> None:
    """Draw in crop coordinates on a 48x48 mask or a :func:`_canvas` (sub-pixel precise)."""
    f = 4 * mask.shape[0] / 48  # shift=2 adds two fractional bits
    cv2.ellipse(mask, (int(round(c[0] * f)), int(round(c[1] * f))),
                (max(1, int(round(ax[0] * f))), max(1, int(round(ax[1] * f)))), ang, 0, 360,
                value, thick if thick < 0 else max(1, int(thick * mask.shape[0] / 48)),
                lineType=cv2.LINE_8, shift=2)


def _texture(rng: np.random.Generator, donors: np.ndarray, mean: float, spread: float) -> np.ndarray:
    """A 48x48 texture: a random donor face, shifted, flipped and re-levelled."""
    d = donors[rng.integers(len(donors))].astype(np.float32)
    d = np.roll(d, (rng.integers(-20, 20), rng.integers(-20, 20)), axis=(0, 1))
    if rng.random() < 0.5:
        d = d.T.copy()
    d = cv2.GaussianBlur(d, (0, 0), rng.uniform(0.5, 2.0))
    d = (d - d.mean()) / max(d.std(), 1.0)
    return np.clip(mean + spread * d, 0, 255)


def glasses(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Eyeglasses (frames, sometimes tinted) or sunglasses over both eyes."""
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
    return out, ["eyes"]


def _skin(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 skin texture from the face's own cheeks and forehead, re-levelled."""
    y0, x0 = int(rng.choice([2, 26])), int(rng.choice([8, 28]))
    patch = img[y0:y0 + 12, x0:x0 + 12].astype(np.float32)
    tile = np.tile(np.concatenate([patch, patch[:, ::-1]], axis=1), (4, 2))[:48, :48]
    tile = cv2.GaussianBlur(tile, (0, 0), rng.uniform(0.8, 1.6))
    level = float(np.percentile(img[14:40, 10:38], 70)) * rng.uniform(0.9, 1.25)
    return np.clip(level + (tile - tile.mean()) * rng.uniform(0.5, 1.0), 0, 255)


def _hand_mask(rng: np.random.Generator, base: tuple[float, float], angle: float,
               scale: float) -> tuple[np.ndarray, np.ndarray]:
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


def hand(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One or two hands of the face's own skin: on the cheeks and jaw, or over the mouth."""
    where = rng.choice(["side", "side", "side", "mouth", "chin", "eye"])
    scale = rng.uniform(0.85, 1.5)
    if where == "side":  # on the cheek, fingers up along the side of the face
        left = rng.random() < 0.5
        base = (rng.uniform(-6, 8), rng.uniform(24, 44))
        angle = -math.pi / 2 + rng.uniform(-0.1, 0.7)  # up and inwards
        if not left:
            base, angle = (47 - base[0], base[1]), math.pi - angle
        masks = [_hand_mask(rng, base, angle, scale)]
        if rng.random() < 0.6:  # both hands, mirrored
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


def hair(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A fringe or strands of dark hair falling over the forehead and eyes."""
    out = img.copy()
    tone = rng.uniform(5, 80) if rng.random() < 0.8 else rng.uniform(150, 230)
    mask = np.zeros_like(img)
    if rng.random() < 0.6:  # solid fringe with a wavy lower edge, from one side
        x = np.arange(48)
        depth = rng.uniform(14, 30)
        slope = rng.uniform(-0.5, 0.5)
        edge = depth + slope * (x - 24) + 2 * np.sin(x / rng.uniform(2, 5) + rng.uniform(0, 6))
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


def hat(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A hat or cap covering the forehead down to (or over) the brows."""
    x = np.arange(48)
    low = rng.uniform(11, 22)
    edge = low - rng.uniform(0, 0.012) * (x - 24 - rng.uniform(-6, 6)) ** 2
    mask = (np.arange(48)[:, None] < edge[None, :]).astype(np.float32)
    tex = _texture(rng, donors, rng.uniform(10, 240), rng.uniform(3, 25))
    brim = np.zeros_like(img)
    for xi in x:
        yi = int(np.clip(edge[xi], 0, 47))
        brim[max(0, yi - 2):yi, xi] = 1
    tex = tex * (1 - 0.4 * brim)
    return img * (1 - mask) + tex * mask, []


def face_mask(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A medical or cloth mask, or a scarf, over the lower face."""
    top = rng.uniform(26, 36)
    x = np.arange(48)
    half = rng.uniform(17, 23)
    top_edge = top + 0.01 * (x - 24) ** 2 * rng.uniform(0, 1)
    mask = ((np.arange(48)[:, None] > top_edge[None, :]) & (np.abs(x - 24)[None, :] < half))
    mask = mask.astype(np.float32)
    tone = rng.uniform(120, 250) if rng.random() < 0.6 else rng.uniform(10, 120)
    tex = tone + rng.normal(0, 3, img.shape)
    for _ in range(int(rng.integers(0, 4))):  # folds
        y = int(rng.uniform(top + 2, 47))
        tex[y:y + 1] *= rng.uniform(0.75, 0.9)
    shade = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.1), 48)[None, :]
    tex = tex * shade
    return img * (1 - mask) + tex * mask, []


def thing(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, list[str]]:
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
        pts = np.array([(c[0] + size[0] * math.cos(t) * rng.uniform(0.5, 1.3),
                         c[1] + size[1] * math.sin(t) * rng.uniform(0.5, 1.3))
                        for t in np.linspace(0, 2 * math.pi, 7)[:-1]])
        cv2.fillPoly(mask, [np.int32(pts)], 1.0)
    if rng.random() < 0.5:
        tex = _texture(rng, donors, rng.uniform(0, 255), rng.uniform(5, 40))
    else:
        g = np.linspace(0, 1, 48)
        tex = rng.uniform(0, 255) + rng.uniform(-80, 80) * (g[None, :] if rng.random() < 0.5 else g[:, None])
        tex = tex + rng.normal(0, 5, img.shape)
    alpha = cv2.GaussianBlur(mask, (0, 0), 0.5)
    return img * (1 - alpha) + tex * alpha, []


# Mix: hands and eyeglasses are the commonest real occluders of in-the-wild faces.
OCCLUDERS = (glasses, glasses, hand, hand, hand, hand, hair, hat, face_mask, thing)


def occlude(img: np.ndarray, rng: np.random.Generator, donors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint one (sometimes two) occluders; return the image and the 5 targets."""
    out = img.astype(np.float32)
    forced: list[str] = []
    for _ in range(1 if rng.random() < 0.85 else 2):
        fn = OCCLUDERS[rng.integers(len(OCCLUDERS))]
        out, f = fn(out, rng, donors)
        forced += f
    diff = (np.abs(out - img) > 12).astype(np.float32)
    targets = np.zeros(1 + len(F.REGIONS), np.float32)
    for k, name in enumerate(F.REGIONS):
        y0, y1, x0, x1 = REGION_BOXES[name]
        if name in forced or diff[y0:y1, x0:x1].mean() >= REGION_MIN_COVER[name]:
            targets[1 + k] = 1
    cover = (diff * FACE_ELLIPSE).sum() / FACE_ELLIPSE.sum()
    targets[0] = 1.0 if (targets[1:].any() or cover >= 0.08) else 0.0
    return np.clip(out, 0, 255), targets


def jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Alignment jitter, flips and photometric changes, for clean and occluded faces alike."""
    ang, s = rng.uniform(-8, 8), rng.uniform(0.93, 1.07)
    m = cv2.getRotationMatrix2D((24, 24), ang, s)
    m[:, 2] += rng.uniform(-2, 2, 2)
    out = cv2.warpAffine(img.astype(np.float32), m, (48, 48), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0))
    out = 255 * (np.clip(out, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    out = out * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20) + rng.normal(0, rng.uniform(0, 5), out.shape)
    return np.clip(out, 0, 255)


def make_batch(crops: np.ndarray, idx: np.ndarray, rng: np.random.Generator, donors: np.ndarray,
               pseudo: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Half the faces get a synthetic occluder; with ``pseudo`` (real faces an earlier fit
    finds occluded, and their targets) 40% synthetic and 10% pseudo-labelled real ones."""
    xs, ys = [], []
    synthetic = 0.5 if pseudo is None else 0.4
    for i in idx:
        img = crops[i].astype(np.float32)
        y = np.zeros(1 + len(F.REGIONS), np.float32)
        u = rng.random()
        if u < synthetic:
            img, y = occlude(img, rng, donors)
        elif u < 0.5 and pseudo is not None:
            k = rng.integers(len(pseudo[0]))
            img, y = pseudo[0][k].astype(np.float32), pseudo[1][k]
        xs.append(jitter(img, rng))
        ys.append(y)
    return F.standardize_faces(np.stack(xs)), np.stack(ys)


# ----------------------------------------------------------------------------- training
def auroc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(s)
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _held_out_scores(net: Any, crops: np.ndarray, held: Any) -> np.ndarray:
    """"Occluded" probabilities of the held-out labelled faces, as curate scores them."""
    if not len(held):
        return np.zeros(0)
    return F.mean_probabilities([net.eval()], crops[held["idx"].to_numpy()])[:, 0]


def _fit_labelled(args: argparse.Namespace, seed: int, crops: np.ndarray, clean: np.ndarray,
                  target: dict[int, float], pos: np.ndarray, neg: np.ndarray, held: Any) -> Any:
    """One network of the labelled stage (see :func:`fit_on_labels`), from ``--init``."""
    import torch
    from safetensors.torch import load_file

    torch.manual_seed(seed)
    donors = crops[clean]
    net = F.build_occlusion_net()
    net.load_state_dict(load_file(str(args.init)))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    batch = 128
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * math.ceil(len(clean) / batch))
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    rng = np.random.default_rng(seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = rng.permutation(clean)
        for b in range(0, len(perm), batch):
            idx = perm[b:b + batch]
            n_real = int(round(args.real_frac * len(idx)))
            x, y = make_batch(crops, idx[n_real:], rng, donors)
            weight = np.ones_like(y)
            if n_real:
                take = np.where(rng.random(n_real) < 0.5, rng.choice(pos, n_real), rng.choice(neg, n_real))
                xr = np.stack([jitter(crops[i].astype(np.float32), rng) for i in take])
                yr = np.zeros((n_real, y.shape[1]), np.float32)
                yr[:, 0] = [target[i] for i in take]
                wr = np.zeros_like(yr)
                wr[:, 0] = 1.0
                x = np.concatenate([F.standardize_faces(xr), x])
                y, weight = np.concatenate([yr, y]), np.concatenate([wr, weight])
            w = torch.from_numpy(weight)
            loss = (bce(net(torch.from_numpy(x)), torch.from_numpy(y)) * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        msg = ""
        if len(held):
            s = _held_out_scores(net, crops, held)
            rnd = (held["sample"] == "random").to_numpy()
            y_held = held["occluded"].to_numpy()
            msg = (f" held-out AUROC {auroc(y_held, s):.4f} (randomly sampled faces "
                   f"{auroc(y_held[rnd], s[rnd]):.4f}, n={rnd.sum()})")
        print(f"seed {seed} epoch {epoch + 1}/{args.epochs}{msg} ({time.time() - t0:.0f} s)", flush=True)
    return net


def fit_on_labels(args: argparse.Namespace, crops: np.ndarray, rel_paths: np.ndarray) -> None:
    """Fine-tune ``--init`` on hand-labelled real faces (the last fitting stage).

    Each batch of 128: ``--real-frac`` of it hand-labelled faces drawn half occluded, half
    clean (jittered; only the "occluded" output is trained on them, as they carry no region
    labels), the rest as in :func:`make_batch` (half with a synthetic occluder). The clean
    pool is the unlabelled faces that ``--clean-with`` scores at most 0.5. With
    ``--cv-fold K`` the labelled faces of fold K (of 5, seeded) are held out, and the
    AUROC on them (all, and the randomly sampled ones) is printed after every epoch.
    """
    import pandas as pd
    import torch
    from safetensors.torch import save_file

    if args.init is None or args.clean_with is None:
        raise SystemExit("--real-labels needs --init and --clean-with")
    labels = pd.read_csv(args.real_labels)
    where = {p: i for i, p in enumerate(rel_paths)}
    missing = labels.loc[~labels["path"].isin(where), "path"]
    if len(missing):
        raise SystemExit(f"{len(missing)} labelled faces are not in the seeded sample with a face "
                         f"found, e.g. {missing.iloc[0]}: use the --n-faces/--seed they came from")
    labels["idx"] = labels["path"].map(where)
    fold = np.random.default_rng(123).integers(0, 5, len(labels))
    held = labels[fold == args.cv_fold] if args.cv_fold is not None else labels.iloc[:0]
    train = labels[fold != args.cv_fold] if args.cv_fold is not None else labels
    target = dict(zip(train["idx"], train["occluded"].astype(np.float32), strict=True))
    pos = train.loc[train["occluded"] == 1, "idx"].to_numpy()
    neg = train.loc[train["occluded"] == 0, "idx"].to_numpy()

    torch.set_num_threads(args.threads)
    prev = F.OcclusionModel(args.clean_with).probabilities(crops)[:, 0]
    clean = np.flatnonzero((prev <= 0.5) & ~np.isin(np.arange(len(crops)), labels["idx"]))
    print(f"{len(train)} labelled faces to fit ({len(pos)} occluded), {len(held)} held out; "
          f"clean pool {len(clean)} of {len(crops)}")
    base = F.OcclusionModel(args.init).probabilities(crops[labels["idx"].to_numpy()])[:, 0]
    rnd = (labels["sample"] == "random").to_numpy()
    print(f"--init on all {len(labels)} labelled faces (it was fitted on none of them): AUROC "
          f"{auroc(labels['occluded'].to_numpy(), base):.4f} (randomly sampled faces "
          f"{auroc(labels['occluded'].to_numpy()[rnd], base[rnd]):.4f}, n={rnd.sum()})")
    seeds = [int(x) for x in str(args.seeds).split(",")] if args.seeds else [args.seed]
    states, held_scores = [], []
    for seed in seeds:
        net = _fit_labelled(args, seed, crops, clean, target, pos, neg, held)
        states.append({k: v.detach().contiguous() for k, v in net.state_dict().items()})
        held_scores.append(_held_out_scores(net, crops, held))
    if len(held):
        s = np.mean(held_scores, axis=0)  # the saved file's score: the members' mean
        rnd = (held["sample"] == "random").to_numpy()
        y_held = held["occluded"].to_numpy()
        print(f"held-out AUROC of the {len(seeds)}-network file: {auroc(y_held, s):.4f} "
              f"(randomly sampled faces {auroc(y_held[rnd], s[rnd]):.4f}, n={rnd.sum()})")
        pd.DataFrame({"path": held["path"], "occluded": y_held, "sample": held["sample"],
                      "score": s}).to_csv(args.out.with_suffix(".heldout.csv"), index=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(F.join_members(states) if len(states) > 1 else states[0], str(args.out), metadata={
        "fitted_by": "bench/fit_occlusion.py --real-labels", "seeds": ",".join(map(str, seeds)),
        "labels": str(len(train)), "epochs": str(args.epochs), "real_frac": str(args.real_frac),
        "analysis_version": F.ANALYSIS_VERSION})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-faces", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crops-cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--clean-with", type=Path, default=None,
                    help="weights of a previous fit: its occluded-looking faces leave the clean pool")
    ap.add_argument("--pseudo-labels", action="store_true",
                    help="with --clean-with: the previous fit's top 5%% become occluded examples")
    ap.add_argument("--real-labels", type=Path, default=None,
                    help="hand labels (CSV: path relative to fer2013/train, occluded 0/1): "
                         "fine-tune --init on them, mixed with synthetic occluders")
    ap.add_argument("--init", type=Path, default=None, help="with --real-labels: starting weights")
    ap.add_argument("--real-frac", type=float, default=0.85,
                    help="with --real-labels: share of each batch drawn from the labelled faces")
    ap.add_argument("--lr", type=float, default=1e-3, help="with --real-labels: peak learning rate")
    ap.add_argument("--seeds", default=None,
                    help="with --real-labels: comma-separated seeds; one network each, all "
                         "saved in one file whose score is their mean (default: --seed alone)")
    ap.add_argument("--cv-fold", type=int, default=None,
                    help="with --real-labels: hold out fold K of 5 (seeded) and print its AUROC")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    crops, rel_paths = aligned_fer_faces(args.n_faces, args.seed, args.crops_cache)
    if args.real_labels is not None:
        fit_on_labels(args, crops, rel_paths)
        return
    pseudo = None
    if args.clean_with is not None:  # drop training faces a previous fit finds occluded
        probs = F.OcclusionModel(args.clean_with).probabilities(crops)
        prev = probs[:, 0]
        print(f"--clean-with {args.clean_with}: dropping {(prev > 0.5).sum()} faces scored > 0.5")
        if args.pseudo_labels:  # its top 5% become real occluded examples (self-training)
            top = prev >= np.quantile(prev, 0.95)
            targets = np.concatenate([np.ones((top.sum(), 1)), probs[top, 1:] > 0.5], axis=1)
            pseudo = (crops[top], targets.astype(np.float32))
            print(f"pseudo-labelled occluded faces: {top.sum()} (score >= {prev[top].min():.3f})")
        crops = crops[prev <= 0.5]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(crops))
    n_val = len(crops) // 10
    val, train = order[:n_val], order[n_val:]
    donors = crops[train]
    print(f"{len(crops)} aligned FER2013 training faces: {len(train)} fit, {len(val)} held out")

    val_rng = np.random.default_rng(args.seed + 1)
    xv, yv = make_batch(crops, val, val_rng, donors, pseudo)
    net = F.build_occlusion_net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 128
    steps = args.epochs * math.ceil(len(train) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = rng.permutation(train)
        total = 0.0
        for b in range(0, len(perm), batch):
            x, y = make_batch(crops, perm[b:b + batch], rng, donors, pseudo)
            logits = net(torch.from_numpy(x))
            loss = loss_fn(logits, torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(x)
        net.eval()
        with torch.inference_mode():
            pv = torch.sigmoid(net(torch.from_numpy(xv))).numpy()
        region_acc = np.mean([(pv[yv[:, 0] == 1, 1 + k] >= 0.5) == (yv[yv[:, 0] == 1, 1 + k] == 1)
                              for k in range(len(F.REGIONS))])
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / len(perm):.4f} "
              f"held-out synthetic AUROC {auroc(yv[:, 0], pv[:, 0]):.4f} "
              f"region accuracy {region_acc:.3f} ({time.time() - t0:.0f} s)", flush=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata={
        "fitted_by": "bench/fit_occlusion.py", "seed": str(args.seed),
        "n_faces": str(len(crops)), "epochs": str(args.epochs),
        "analysis_version": F.ANALYSIS_VERSION})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
