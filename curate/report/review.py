"""The review view of the report: a curator keeps, drops or relabels images in the browser.

Every screened image (``images_suspect.parquet``) goes into the page as data, in a
``<script type="application/json">`` block (``<``, ``>`` and ``&`` escaped, so no value can
close the block); the review script (``review.js``, allowed by its sha256 in the page's
Content-Security-Policy) builds the list with ``textContent`` and ``createElement`` only,
so every name from the data stays text. The list is drawn as it scrolls (only the visible
rows are in the DOM) and thumbnails are attached to a card when it is drawn.

Thumbnails are embedded only for the images a curator needs to look at: those an image
screen rejects and those whose label suspicion is at least :data:`REVIEW_SUSPICION`, up
to ``max_thumbnails`` (rejected first, then by suspicion); the other images are listed
without a picture. Small grey or colour JPEGs keep 100,000 images to a few MB.

Decisions persist in the browser's ``localStorage`` under a key made of the run's
fingerprint (sha256 of ``images_suspect.parquet``) and of the loaded decisions file, and
download as ``decisions.csv`` (columns in :data:`curate.decisions.COLUMNS`), which
``curate export --decisions`` applies.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate import screens
from curate.decisions import Decisions
from curate.io import file_sha256
from curate.report.html import Markup, esc, join, note, section, tag
from curate.report.inputs import ScreenRun
from curate.report.palette import reason_colors
from curate.report.thumbnails import Thumbnails

REVIEW_SUSPICION = 0.9  # kept images at or above this label suspicion get a thumbnail too
MAX_THUMBNAILS = 20_000
THUMB_SIZE = 64
JPEG_QUALITY = 70  # a 48x48 FER2013 face: ~970 bytes as a data: URI
KEYS = (
    ("k", "keep"),
    ("d", "drop"),
    ("r", "relabel to the chosen label (the suggested one first)"),
    ("1-9", "relabel to class 1-9"),
    ("u", "undo the decision"),
    ("\u2192 / j, \u2190", "next / previous image"),
    ("\u2193 \u2191", "next / previous row"),
)


def script() -> str:
    """The review script, as it is inlined into the page."""
    return resources.files("curate.report").joinpath("review.js").read_text(encoding="utf-8")


def json_block(element_id: str, value: Any) -> Markup:
    """``value`` as JSON in a non-executed script block; ``<``, ``>`` and ``&`` are written
    as ``\\u003c`` etc., so no string in the data can end the block or open a tag."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(f'<script type="application/json" id="{esc(element_id)}">{text}</script>')


def run_fingerprint(run: ScreenRun) -> str:
    """What keys the browser's saved decisions: the sha256 of images_suspect.parquet."""
    try:
        return file_sha256(run.screen_dir / "images_suspect.parquet")[:20]
    except OSError:
        return hashlib.sha256(str(run.screen_dir.resolve()).encode()).hexdigest()[:20]


def review_table(run: ScreenRun) -> pd.DataFrame | None:
    """One row per screened image, by image_id: path, label, suggested_label, suspicion,
    ``rejected`` (an image screen rejects it: what export leaves out), ``reason``, and the
    face screens' ``yaw``, ``occlusion`` and ``face_score`` (NaN where they did not run)."""
    s = run.suspect
    if s is None or "image_id" not in s.columns or "label" not in s.columns:
        return None
    from curate.export import image_rejects  # the export's own verdict, never recomputed here

    s = s.drop_duplicates("image_id").sort_values("image_id", kind="stable").reset_index(drop=True)
    rejects = image_rejects(s)
    rejected = np.logical_or.reduce([*rejects.values(), np.zeros(len(s), bool)])
    codes: list[list[str]] = [[] for _ in range(len(s))]
    for scr in screens.registered():
        col = scr.columns()[2]
        if scr.level != "image" or col not in s.columns or scr.name not in rejects:
            continue
        for i in np.flatnonzero(rejects[scr.name]):
            r = s[col].iat[i]
            codes[i] += (
                [c for c in r.split(";") if c] if isinstance(r, str) and r else [scr.codes[0]]
            )
    path = s["path"] if "path" in s.columns else pd.Series(None, index=s.index)

    def number(col: str) -> pd.Series | float:
        return pd.to_numeric(s[col], errors="coerce") if col in s.columns else np.nan

    out = pd.DataFrame(
        {
            "image_id": s["image_id"].astype("int64"),
            "path": [p if isinstance(p, str) else "" for p in path],
            "label": s["label"].astype(object).map(lambda v: v if isinstance(v, str) else ""),
            "suggested_label": (
                s["suggested_label"].astype(object).map(lambda v: v if isinstance(v, str) else None)
                if "suggested_label" in s.columns
                else None
            ),
            "suspicion": pd.to_numeric(s["suspicion"], errors="coerce")
            if "suspicion" in s.columns
            else np.nan,
            "rejected": rejected,
            "reason": [";".join(dict.fromkeys(c)) for c in codes],
            # the face screens' measures, shown on their reasons and sorted by
            "yaw": number("yaw"),
            "occlusion": number("occlusion"),
            "face_score": number("face_score"),
        }
    )
    return out


def rounded(values: pd.Series, digits: int) -> list[float | None]:
    """JSON-safe: None where missing or not finite."""
    return [
        round(float(x), digits) if math.isfinite(x) else None for x in values.to_numpy(dtype=float)
    ]


def thumbnail_rows(table: pd.DataFrame, max_thumbnails: int) -> np.ndarray:
    """Rows that get a thumbnail: rejected, then the most suspect at or above REVIEW_SUSPICION."""
    susp = table["suspicion"].fillna(-1).to_numpy(float)
    want = table["rejected"].to_numpy(bool) | (susp >= REVIEW_SUSPICION)
    idx = np.flatnonzero(want)
    order = np.lexsort(
        (table["image_id"].to_numpy()[idx], -susp[idx], ~table["rejected"].to_numpy(bool)[idx])
    )
    return np.sort(idx[order][:max_thumbnails])


def review_payload(
    run: ScreenRun, table: pd.DataFrame, decisions: Decisions | None, max_thumbnails: int
) -> tuple[dict[str, Any], list[str], int]:
    """(the data of the review script, the thumbnails, how many images wanted one)."""
    classes = sorted(
        {*table["label"], *[v for v in table["suggested_label"] if isinstance(v, str)]} - {""}
    )
    cls = {c: i for i, c in enumerate(classes)}
    reasons = sorted(set(table["reason"]) - {""})
    rsn = {r: i + 1 for i, r in enumerate(reasons)}
    dirs: dict[str, int] = {}
    dir_idx, names = [], []
    for p in table["path"]:
        d, _, n = p.rpartition("/") if "/" in p else ("", "", p)
        dir_idx.append(dirs.setdefault(d, len(dirs)))
        names.append(n)
    thumbs = Thumbnails(size=THUMB_SIZE, jpeg_quality=JPEG_QUALITY)
    wanted = thumbnail_rows(table, max_thumbnails)
    uris: list[str] = []
    thumb_of = np.full(len(table), -1, dtype=np.int64)
    for i in wanted:
        uri, _ = thumbs.get(table["path"].iat[i] or None)
        if uri:
            thumb_of[i] = len(uris)
            uris.append(uri)
    initial: dict[str, list[Any]] = {}
    if decisions is not None:
        for image_id, d, lab in decisions.table.itertuples(index=False):
            initial[str(int(image_id))] = [d, cls[lab]] if d == "relabel" else [d]
    flagged = (table["rejected"] | (table["suspicion"].fillna(-1) >= REVIEW_SUSPICION)).to_numpy(
        bool
    )
    n_flagged = int(flagged.sum())
    payload = {
        "run": run_fingerprint(run)
        + ":"
        + (decisions.sha256[:12] if decisions is not None else "none"),
        "classes": classes,
        "reasons": reasons,
        "colors": {c: reason_colors().get(c, "#777") for r in reasons for c in r.split(";")},
        "review_suspicion": REVIEW_SUSPICION,
        "dirs": [d + "/" if d else "" for d in dirs],
        "dir": dir_idx,
        "name": names,
        "id": table["image_id"].tolist(),
        "label": [cls.get(v, -1) for v in table["label"]],
        "suggested": [
            cls.get(v, -1) if isinstance(v, str) else -1 for v in table["suggested_label"]
        ],
        "suspicion": rounded(table["suspicion"], 4),
        "rejected": table["rejected"].astype(int).tolist(),
        "flagged": flagged.astype(
            int
        ).tolist(),  # to review: rejected, or suspicion >= REVIEW_SUSPICION
        "reason": [rsn.get(r, 0) for r in table["reason"]],
        "thumb": thumb_of.tolist(),
        "decisions": initial,
        "decisions_source": None if decisions is None else Path(decisions.source).name,
    }
    if table[["yaw", "occlusion", "face_score"]].notna().any(axis=None):
        # |yaw| in degrees, occlusion 0..1, and the face screen's score (above 1 rejected)
        payload["face"] = {
            "yaw": rounded(table["yaw"].abs(), 1),
            "occlusion": rounded(table["occlusion"], 2),
            "score": rounded(table["face_score"], 3),
        }
    return payload, uris, n_flagged


def review_section(
    run: ScreenRun, decisions: Decisions | None, max_thumbnails: int, left_out: list[str]
) -> tuple[Markup, str | None, int]:
    """(the Review section, the script to inline or None, thumbnails embedded)."""
    table = review_table(run)
    if table is None:
        return (
            section(
                "review",
                "Review",
                [
                    note(
                        run.notes.get("suspect", "images_suspect.parquet is missing")
                        + "; there are no per-image verdicts to review."
                    )
                ],
            ),
            None,
            0,
        )
    payload, uris, n_flagged = review_payload(run, table, decisions, max_thumbnails)
    if n_flagged > len(uris):
        left_out.append(
            f"The review view embeds thumbnails for {len(uris):,} of the {n_flagged:,} images "
            "the screens reject or suspect (--max-thumbnails, or unreadable files)."
        )
    keys = join((Markup("<kbd>") + k + Markup("</kbd> ") + v for k, v in KEYS), " \u00b7 ")
    loaded = (
        [
            tag(
                "p",
                f"Decisions loaded from {payload['decisions_source']} ({len(payload['decisions']):,} "
                "images); changes made here are saved in this browser.",
                class_="note",
            )
        ]
        if decisions is not None
        else []
    )
    body = [
        tag(
            "p",
            join(
                [
                    f"Decide per image: keep (export it even though a screen rejects it), drop (leave it "
                    f"out) or relabel (export it under another class). {len(table):,} screened images; "
                    f"thumbnails are embedded for the {len(uris):,} that an image screen rejects or whose label "
                    f"suspicion is at least {REVIEW_SUSPICION:g}, the others are listed without a picture. "
                    "Decisions are saved in this browser (for this run) and download as decisions.csv, which ",
                    tag("code", "curate export SCREEN_DIR --decisions decisions.csv"),
                    " applies.",
                ]
            ),
        ),
        *loaded,
        Markup('<p class="keys">') + keys + Markup("</p>"),
        Markup(
            '<noscript><p class="note">The review needs JavaScript; the rest of the report does not.'
            "</p></noscript>"
        ),
        Markup(
            '<div class="rv-bar">'
            '<label>show <select id="rv-reason"></select></label>'
            '<label>class <select id="rv-class"></select></label>'
            '<label>suggested <select id="rv-suggested"></select></label>'
            '<label>suspicion \u2265 <input id="rv-min" type="number" min="0" max="1" step="0.05" '
            'value="0"></label>'
            '<label>decision <select id="rv-decision"></select></label>'
            '<label>sort <select id="rv-sort"></select></label>'
            '<button type="button" id="rv-download">Download decisions.csv</button></div>'
            '<div id="rv-progress" class="rv-progress"></div>'
            '<div id="rv-list" class="rv-list" tabindex="0"><div id="rv-spacer" class="rv-spacer">'
            "</div></div>"
        ),
        json_block("rv-data", payload),
        json_block("rv-thumbs", uris),
    ]
    return section("review", "Review", body), script(), len(uris)
