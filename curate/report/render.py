"""Assemble the screening report from a screen output folder into one HTML file."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from curate import screens
from curate.decisions import Decisions, read_decisions
from curate.errors import CurateError
from curate.io import write_text
from curate.limits import seed_value, whole_number
from curate.outdir import check_output_file, head_bytes, locked, require_complete
from curate.report import figures
from curate.report.alerts import alerts
from curate.report.galleries import image_screen_gallery, suspect_gallery, tuple_gallery
from curate.report.html import (
    CSP,
    Markup,
    banner,
    chip,
    esc,
    figure,
    fmt_int,
    fmt_num,
    fmt_pct,
    join,
    note,
    page,
    section,
    table,
    tag,
)
from curate.report.inputs import ScreenRun, load_screen_dir
from curate.report.palette import reason_color
from curate.report.review import MAX_THUMBNAILS, review_section
from curate.report.sections import SectionContext, plugin_sections
from curate.report.sensitivity import alpha_grid, face_sensitivity, sensitivity, sensitivity_z
from curate.report.tables import counts_by_class, counts_by_reason, negative_confusion, reason_flags
from curate.report.thumbnails import Thumbnails
from curate.screens.faces import rejects_by_class
from curate.stats.statistical import NEGATIVE_TOO_CLOSE, POSITIVE_TOO_FAR
from curate.tuples import ROLES

MAX_CLASSES = 60  # rows of the by-class table and chart
MAX_CONFUSION = 25  # labels on each axis of the confusion table
MAX_PARAM_CHARS = 300
# the run's own sections; the registered screens' sections (curate.report.sections) go
# between the rejections and the galleries
NAV_BEFORE = (
    ("summary", "Summary"),
    ("review", "Review"),
    ("boundary", "Boundary"),
    ("sensitivity", "Sensitivity"),
    ("rejections", "Rejections"),
)
NAV_AFTER = (("galleries", "Galleries"),)
# short names of screen sections in the navigation bar
_NAV_NAMES = {"Leakage across splits": "Leakage"}


def write_report(
    screen_dir: str | Path,
    out: str | Path | None = None,
    *,
    max_gallery: int = 24,
    seed: int = 0,
    decisions: str | Path | None = None,
    max_thumbnails: int = MAX_THUMBNAILS,
    force: bool = False,
) -> Path:
    """Render the HTML screening report of a ``curate screen`` output folder.

    Parameters
    ----------
    screen_dir:
        The ``--out`` folder of ``curate screen`` (needs ``scores.parquet``; the other
        outputs are optional and their sections say so when they are missing).
    out:
        Where to write the report; default ``screen_dir/report.html``.
    max_gallery:
        Cap on the items of each gallery (tuples, suspect images, face samples), which
        bounds the file size whatever the dataset size.
    seed:
        Seed of the random face samples; the same inputs and seed give the same bytes.
    decisions:
        A curator's ``decisions.csv`` (checked by :func:`curate.decisions.read_decisions`)
        to load into the review view.
    max_thumbnails:
        Cap on the thumbnails of the review view (images the screens reject or suspect).
    force:
        Replace an existing ``out`` that is not a curate report (a file of the screen
        folder is never replaced: :func:`curate.outdir.check_output_file`).

    Returns the path written. The file is self-contained: figures and thumbnails are
    inline ``data:`` URIs, the style is inline, and the one script (the review view) is
    inline and allowed by its sha256 in the Content-Security-Policy.
    """
    seed = seed_value(seed)
    max_gallery = whole_number(max_gallery, "--max-gallery", lo=1, hi=10_000)
    require_complete(
        Path(screen_dir), what="screen folder"
    )  # a killed screen's files do not belong together
    run = load_screen_dir(screen_dir)
    review = None
    if decisions is not None:
        if run.suspect is None:
            raise CurateError(
                f"{run.screen_dir} has no images_suspect.parquet, so there is nothing to review",
                hint="re-run curate screen, or leave out --decisions",
            )
        review = read_decisions(decisions, run.suspect)
    target = check_output_file(
        out if out is not None else run.screen_dir / "report.html",
        option="--out-file",
        what="a report",
        inputs=[run.screen_dir],
        force=force,
        ours=is_curate_report,
    )
    inside = target.resolve().parent == run.screen_dir.resolve()
    with locked(run.screen_dir, "report") if inside else contextlib.nullcontext():
        write_text(
            render_html(
                run,
                max_gallery=max_gallery,
                seed=seed,
                decisions=review,
                max_thumbnails=max_thumbnails,
            ),
            target,
        )
    return target


def is_curate_report(path: Path) -> bool:
    """Whether ``path`` is an HTML report curate wrote (its doctype and its CSP head it)."""
    head = head_bytes(path)
    return head.startswith(b"<!DOCTYPE html>") and CSP.encode() in head


def render_html(
    run: ScreenRun,
    *,
    max_gallery: int = 24,
    seed: int = 0,
    decisions: Decisions | None = None,
    max_thumbnails: int = MAX_THUMBNAILS,
) -> str:
    """The report of a loaded screen run, as one HTML string."""
    if max_gallery < 1:
        raise ValueError("max_gallery must be at least 1")
    if max_thumbnails < 0:
        raise ValueError("max_thumbnails must be at least 0")
    flags = reason_flags(run.scores["reason"])
    thumbs = Thumbnails()
    left_out: list[str] = []
    review, script, n_review_thumbs = review_section(run, decisions, max_thumbnails, left_out)
    sections: list[Callable[[], Markup]] = [
        lambda: _summary(run),
        lambda: review,
        lambda: _boundary(run),
        lambda: _sensitivity(run, flags),
        lambda: _rejections(run, flags, left_out),
    ]
    body = [make() for make in sections]
    by_screen = plugin_sections(run, SectionContext(thumbs, max_gallery, seed))
    body += [html for _, _, html in by_screen]
    body.append(_galleries(run, flags, thumbs, max_gallery, seed))
    nav = [
        *NAV_BEFORE,
        *((anchor, _NAV_NAMES.get(title, title)) for anchor, title, _ in by_screen),
        *NAV_AFTER,
    ]
    if left_out:
        body.append(
            section(
                "left-out",
                "What this report leaves out",
                [tag("ul", join(tag("li", x) for x in left_out))],
            )
        )
    title = f"curate screening report \u2014 {_dataset(run)}"
    header = Markup(
        f"<header><h1>{esc('curate screening report')}</h1>"
        f'<div class="sub">dataset: {esc(_dataset(run))}</div>'
        f'<div class="sub">screen output: {esc(run.screen_dir)}</div></header>'
    )
    footer = (
        f"Rendered by curate {_curate_version()} from {run.screen_dir.name}/; "
        f"{thumbs.count} embedded thumbnails in the galleries, {n_review_thumbs} in the review."
    )
    return page(title, header, nav, body, footer, scripts=[script] if script else [])


def _representation_text(rep: Any) -> str:
    """The representation line: the probe measures and the choice (``run.json``'s
    ``params.representation``), the face framing, or n/a for runs made before it."""
    if not isinstance(rep, dict):
        return "n/a"
    text = str(rep.get("summary") or rep.get("used") or "n/a")
    framing = ((rep.get("details") or {}).get("framing") or {}).get("used")
    if framing == "face":
        text += "; faces framed from their landmarks for the backbone"
    missing = rep.get("images_missing")
    if missing:
        text += f"; {missing:,} images without blendshapes (no face landmarks)"
    return text


def _curate_version() -> str:
    from curate import __version__

    return __version__


def _dataset(run: ScreenRun) -> str:
    for params in ((run.build_run or {}).get("params") or {}, run.params):
        for key in ("source", "dataset", "build_dir"):
            if isinstance(params.get(key), str) and params[key]:
                return params[key]
    return str(run.screen_dir)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- summary
def _summary(run: ScreenRun) -> Markup:
    s = run.scores
    n = len(s)
    kept = int(s["keep"].sum())
    counts = (run.run or {}).get("counts") or {}
    n_images = (
        run.n_images_input
        or counts.get("images")
        or (len(run.suspect) if run.suspect is not None else None)
    )
    in_tuples = f" ({fmt_int(len(run.suspect))} in tuples)" if run.suspect is not None else ""
    cards = [
        ("images" + in_tuples, fmt_int(n_images) if n_images is not None else "n/a"),
        ("tuples", fmt_int(n)),
        (f"kept ({fmt_pct(kept / n if n else None)})", fmt_int(kept)),
        (f"rejected ({fmt_pct((n - kept) / n if n else None)})", fmt_int(n - kept)),
    ]
    body: list[Any] = [join(banner(a.text, a.level) for a in alerts(run))]
    body.append(
        Markup('<div class="cards">')
        + join(
            Markup(f"<div class=card><b>{esc(v)}</b><span>{esc(k)}</span></div>") for k, v in cards
        )
        + Markup("</div>")
    )
    p = run.params
    b = run.boundary or {}
    r = run.run or {}
    key_rows = [
        ("kind", "quadruplets" if run.is_quadruplet else "triplets"),
        ("backbone", p.get("backbone", "n/a")),
        ("representation", _representation_text(p.get("representation"))),
        ("label evidence", str((p.get("label_evidence") or {}).get("summary") or "n/a")),
        ("weights", weights_text(run)),
        ("null", b.get("null", p.get("null", "n/a"))),
        (
            "alpha_pos / alpha_neg",
            f"{b.get('alpha_pos', p.get('alpha_pos'))} / {b.get('alpha_neg', p.get('alpha_neg'))}",
        ),
        ("started", r.get("started_at", "n/a")),
        ("run time", f"{r['seconds']:.1f} s" if _num(r.get("seconds")) is not None else "n/a"),
        ("image table", run.images_origin or "none found"),
    ]
    body.append(table(["", ""], key_rows, cls="kv", numeric_from=9))
    if "run" in run.notes:
        body.append(note(run.notes["run"] + "; parameters and versions are unknown."))
    if "images" in run.notes:
        body.append(note(run.notes["images"]))
    if p:
        body.append(
            _details(
                "All parameters",
                table(
                    ["parameter", "value"],
                    [(k, _short_value(v)) for k, v in p.items()],
                    cls="kv",
                    numeric_from=9,
                ),
            )
        )
    versions = r.get("versions") or {}
    if versions:
        body.append(
            _details(
                "Versions",
                table(["package", "version"], versions.items(), cls="kv", numeric_from=9),
            )
        )
    return section("summary", "Summary", body)


def weights_text(run: ScreenRun) -> str:
    """Where the embeddings came from, in words: the bundled model by name, a run folder,
    a weights file, random weights or an embeddings file, with the weights' sha256."""
    from curate.models import bundled_models

    inputs = (run.run or {}).get("inputs") or {}
    source = inputs.get("weights_source") or run.params.get("weights")
    if not isinstance(source, str) or not source:
        return "n/a"
    kind, _, where = source.partition(":")
    bundled = {str(Path(m.location).resolve()): m.name for m in bundled_models()}
    if kind == "run" and str(Path(where).resolve()) in bundled:
        text = f"bundled model {bundled[str(Path(where).resolve())]} ({where})"
    elif run.params.get("embeddings"):
        text = f"none: embeddings read from {run.params['embeddings']}"
    elif kind == "random":
        text = "random (--weights none)"
    else:
        text = {"run": "fine-tuning run", "file": "file", "pretrained-cache": "timm cache"}.get(
            kind, kind
        ) + (f" {where}" if where else "")
    fp = inputs.get("weights_fingerprint")
    return text + (f", sha256 {fp[:12]}\u2026" if isinstance(fp, str) and len(fp) == 64 else "")


def _short_value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS] + " \u2026"


def _details(summary: str, content: Markup) -> Markup:
    return Markup(f"<details><summary>{esc(summary)}</summary>{content}</details>")


# ---------------------------------------------------------------- boundary
def _boundary(run: ScreenRun) -> Markup:
    b = run.boundary
    body: list[Any] = []
    if b is None:
        body.append(
            note(
                run.notes.get("boundary", "boundary.json is missing")
                + "; the thresholds and null curves cannot be drawn."
            )
        )
    if b is not None and isinstance(b.get("class_nulls"), dict):
        return section("boundary", "The boundary", body + _class_boundary(run, b))
    body.append(
        figure(
            figures.boundary_figure(run.scores, b),
            "histograms of tuple distances with the boundary",
        )
    )
    if b is None:
        return section("boundary", "The boundary", body)
    body.append(
        tag(
            "p",
            "Tuples whose anchor-positive distance lies right of T_pos are rejected as "
            f"{POSITIVE_TOO_FAR}; tuples with a negative pair left of T_neg as "
            f"{NEGATIVE_TOO_CLOSE}.",
        )
    )
    rows = [
        (k, fmt_num(b.get(k)) if not isinstance(b.get(k), str) else b.get(k))
        for k in _BOUNDARY_QUANTITIES
        if k in b
    ]
    body.append(table(["quantity", "value"], rows, cls="kv", numeric_from=9))
    body += _global_nulls(b)
    body += _global_calibration(b)
    return section("boundary", "The boundary", body)


_BOUNDARY_QUANTITIES = (
    "null",
    "s",
    "d",
    "d_null",
    "center",
    "mu",
    "sigma",
    "alpha_pos",
    "alpha_neg",
    "t_pos",
    "t_neg",
)


def _global_nulls(b: dict[str, Any]) -> list[Any]:
    """ "Which null fits?": the random-pair histogram under the three global null curves."""
    body: list[Any] = [tag("h3", "Which null fits?")]
    null_fig = figures.null_fit_figure(b)
    if null_fig:
        body.append(
            figure(null_fig, "random different-label pair distances with three null curves")
        )
    if not b.get("random_pair_distances"):
        body.append(
            note(
                "boundary.json holds no random_pair_distances sample, so the histogram "
                "of random different-label pairs is empty."
            )
        )
    nulls = b.get("nulls") or {}
    if "empirical" not in nulls:
        body.append(note("No empirical null was fitted in this run."))
    if nulls:
        body.append(
            table(
                ["null", "d_null", "mu", "sigma"],
                [
                    (
                        ("\u2192 " if k == b.get("null") else "") + k,
                        fmt_num(v.get("d_null")),
                        fmt_num(v.get("mu")),
                        fmt_num(v.get("sigma")),
                    )
                    for k, v in nulls.items()
                    if isinstance(v, dict)
                ],
            )
        )
    return body


def _global_calibration(b: dict[str, Any]) -> list[Any]:
    """The global boundary's calibration check: observed share abnormal against alpha."""
    body: list[Any] = [tag("h3", "Calibration check")]
    cal = b.get("calibration")
    if not (isinstance(cal, dict) and cal):
        return body + [note("boundary.json has no calibration check.")]
    n_pairs = cal.get("n_pairs")
    body.append(
        tag(
            "p",
            f"Share of {fmt_int(n_pairs) if n_pairs else 'the'} random "
            "different-label pairs the boundary calls abnormal, next to the nominal "
            "alpha. Close values mean the null fits.",
        )
    )
    body.append(
        table(
            ["side", "observed share", "nominal alpha"],
            [
                (
                    f"above T_pos (would be {POSITIVE_TOO_FAR})",
                    fmt_pct(cal.get("share_above_t_pos"), 2),
                    fmt_pct(cal.get("nominal_alpha_pos", b.get("alpha_pos")), 2),
                ),
                (
                    f"below T_neg (would be {NEGATIVE_TOO_CLOSE})",
                    fmt_pct(cal.get("share_below_t_neg"), 2),
                    fmt_pct(cal.get("nominal_alpha_neg", b.get("alpha_neg")), 2),
                ),
            ],
        )
    )
    return body


def _class_boundary(run: ScreenRun, b: dict[str, Any]) -> list[Any]:
    """The class-aware boundary: its figure, every fitted null, and its calibration."""
    body: list[Any] = [
        tag(
            "p",
            join(
                [
                    f"Null: {b.get('null')}. Each anchor-positive distance is tested against the null of two "
                    "faces of the anchor's class (",
                    chip(POSITIVE_TOO_FAR),
                    " above its T_pos), each negative pair against the null of its two classes (",
                    chip(NEGATIVE_TOO_CLOSE),
                    " below its T_neg). "
                    "The nulls are fitted to random pairs weighted by how well each image fits its label, so "
                    "the label noise being hunted does not pull them.",
                ]
            ),
        )
    ]
    z_fig = figures.z_figure(run.scores, b)
    if z_fig:
        body.append(figure(z_fig, "standardised tuple distances with the cut-offs"))
    body += _same_class_nulls(b)
    body += _class_pair_grid(b["class_nulls"])
    body += _class_calibration(b)
    null_fig = figures.null_fit_figure(b)
    if null_fig:
        body.append(tag("h3", "For comparison: the global nulls"))
        body.append(
            figure(null_fig, "random different-label pair distances with three global null curves")
        )
    return body


def _same_class_nulls(b: dict[str, Any]) -> list[Any]:
    """The same-class nulls and T_pos per class, with the label model's priors and cap."""
    priors = {c.get("class"): c for c in ((b.get("label_model") or {}).get("classes") or [])}
    n_all = sum(int(c.get("n_labelled") or 0) for c in priors.values()) or None
    rows = []
    for c in b["class_nulls"].get("same") or []:
        p = priors.get(c.get("class"), {})
        share = p.get("n_labelled") / n_all if n_all and p.get("n_labelled") is not None else None
        rows.append(
            (
                c.get("class"),
                fmt_int(p.get("n_labelled")),
                fmt_pct(share),
                fmt_pct(p.get("prior")),
                fmt_num(c.get("mu")),
                fmt_num(c.get("sigma")),
                fmt_num(c.get("t_pos")),
                fmt_int(c.get("n_pairs")) + (" (pooled)" if c.get("pooled") else ""),
            )
        )
    header = [
        "class",
        "labelled images",
        "labelled share",
        "estimated true share",
        "mu",
        "sigma",
        "T_pos",
        "pairs fitted",
    ]
    body: list[Any] = [tag("h3", "Same-class nulls and T_pos"), table(header, rows)]
    body.append(
        note(
            "The estimated true share is the class prior the label screen estimates (EM, "
            "floored at label_prior_floor times the labelled share): a class far below its "
            "labelled share holds many images that look like other classes."
        )
    )
    capped = (b.get("label_model") or {}).get("capped_classes") or []
    if capped:
        body.append(
            note(
                "The label screen's per-class cap (label_max_class_share) acted on "
                + "; ".join(
                    f"{c.get('class')}: {fmt_int(c.get('would_reject'))} of its "
                    f"{fmt_int(c.get('n_images'))} images have label p-values below "
                    f"alpha_label, only the {fmt_int(c.get('rejected'))} most suspect "
                    "are rejected"
                    for c in capped
                )
                + ", so no class vanishes from the data."
            )
        )
    return body


def _class_pair_grid(cn: dict[str, Any]) -> list[Any]:
    """T_neg of every class pair as a grid (none past MAX_CONFUSION classes)."""
    classes = list(cn.get("classes") or [])
    if len(classes) > MAX_CONFUSION:
        return []
    t_neg = {tuple(p["classes"]): p.get("t_neg") for p in cn.get("pairs") or []}
    head = Markup(
        "<tr><th>T_neg</th>" + "".join(f"<th class=num>{esc(c)}</th>" for c in classes) + "</tr>"
    )
    cells = []
    for a in classes:
        row = []
        for c in classes:
            v = t_neg.get((a, c), t_neg.get((c, a)))
            row.append(f"<td class=num>{esc(fmt_num(v) if v is not None else chr(8211))}</td>")
        cells.append(f"<tr><th>{esc(a)}</th>{''.join(row)}</tr>")
    grid = Markup(
        f'<div class="grid"><table><thead>{head}</thead><tbody>{"".join(cells)}</tbody></table></div>'
    )
    return [tag("h3", "Class-pair nulls: T_neg"), grid]


def _class_calibration(b: dict[str, Any]) -> list[Any]:
    """The class-aware boundary's calibration: accepted, all labelled and global pairs."""
    cn = b["class_nulls"]
    cal = b.get("calibration") or {}
    acc = (cn.get("calibration") or {}).get("accepted_pairs") or {}
    every = (cn.get("calibration") or {}).get("all_labelled_pairs") or {}
    glob = cal.get("global_null") or {}
    a_pos, a_neg = b.get("alpha_pos"), b.get("alpha_neg")
    body: list[Any] = [tag("h3", "Calibration check")]
    body.append(
        tag(
            "p",
            "Share of fresh random pairs the boundary calls abnormal, next to the nominal "
            "alpha. The pairs it should accept are weighted by how well both images fit their "
            "labels; close to alpha means the nulls fit. All labelled pairs include the label "
            "noise, so they are rejected more often; the global null is shown for comparison.",
        )
    )
    rows = [
        (
            name,
            fmt_pct(shares.get("share_above_t_pos"), 2),
            fmt_pct(a_pos, 2),
            fmt_pct(shares.get("share_below_t_neg"), 2),
            fmt_pct(a_neg, 2),
        )
        for name, shares in (
            ("pairs the boundary should accept", acc),
            ("all labelled pairs", every),
            ("global effective null, random different-label pairs", glob),
        )
    ]
    body.append(table(["pairs", "above T_pos", "alpha_pos", "below T_neg", "alpha_neg"], rows))
    per_class = acc.get("per_class") or {}
    if per_class:
        body.append(
            _details(
                "Per class: share of accepted same-class pairs above T_pos",
                table(
                    ["class", "above T_pos"],
                    [(k, fmt_pct(v, 2)) for k, v in per_class.items()],
                    cls="kv",
                ),
            )
        )
    return body


# ---------------------------------------------------------------- sensitivity
def _sensitivity(run: ScreenRun, flags: pd.DataFrame) -> Markup:
    b = run.boundary or {}
    mu, sigma = _num(b.get("mu")), _num(b.get("sigma"))
    a_pos, a_neg = _num(b.get("alpha_pos")), _num(b.get("alpha_neg"))
    alphas = np.asarray(alpha_grid([a_pos, a_neg]))
    if {"z_ap", "z_neg"} <= set(run.scores.columns):
        sens = sensitivity_z(run.scores, flags, alphas, alphas)
        null_words = f"the same {b.get('null', '')} null".replace("  ", " ")
    elif mu is not None and sigma is not None and sigma > 0:
        sens = sensitivity(run.scores, flags, mu, sigma, alphas, alphas)
        null_words = f"the same null (mu = {mu:.3f}, sigma = {sigma:.3f})"
    else:
        return section(
            "sensitivity",
            "Sensitivity to alpha",
            [
                note(
                    "scores.parquet has no standardised distances (z_ap, z_neg) and the boundary's mu and "
                    "sigma are unknown, so the kept share cannot be recomputed for other alphas."
                )
            ],
        )
    body: list[Any] = [
        tag(
            "p",
            "Share of tuples the screen would keep at other significance levels, "
            f"from the same distances and {null_words}; the other screens held fixed"
            f" ({fmt_int(sens.n_other_rejected)} tuples rejected by them). "
            "Pick alpha here, then re-run with --alpha-pos / --alpha-neg.",
        )
    ]
    i_pos = int(np.argmin(np.abs(alphas - a_pos))) if a_pos else None
    i_neg = int(np.argmin(np.abs(alphas - a_neg))) if a_neg else None
    along_pos = sens.kept_share[:, i_neg] if i_neg is not None else sens.kept_share.diagonal()
    along_neg = sens.kept_share[i_pos, :] if i_pos is not None else sens.kept_share.diagonal()
    body.append(
        figure(
            figures.sensitivity_figure(alphas, along_pos, along_neg, (a_pos, a_neg)),
            "kept share against alpha",
        )
    )
    actual = float(run.scores["keep"].mean()) if len(run.scores) else 0.0
    if i_pos is not None and i_neg is not None:
        recomputed = float(sens.kept_share[i_pos, i_neg])
        if abs(recomputed - actual) > 0.005:
            body.append(
                banner(
                    f"At the run's own alphas this table keeps {fmt_pct(recomputed, 2)} of tuples but the "
                    f"screen kept {fmt_pct(actual, 2)}: the screen used another rule than "
                    "T = mu \u00b1 z(1 - alpha) sigma on these distances, so read the table as a guide.",
                    "amber",
                )
            )
    head = Markup(
        "<tr><th>alpha_pos \u2193 / alpha_neg \u2192</th>"
        + "".join(f"<th class=num>{esc(_alpha(a))}</th>" for a in alphas)
        + "</tr>"
    )
    rows = []
    lo, hi = float(sens.kept_share.min()), float(sens.kept_share.max())
    for i, ap in enumerate(alphas):
        cells = []
        for j, _ in enumerate(alphas):
            v = sens.kept_share[i, j]
            own = i == i_pos and j == i_neg
            rel = (hi - v) / (hi - lo) if hi > lo else 0.0
            style = f"background:{_heat(rel)}" + (";outline:2px solid #000" if own else "")
            cells.append(f'<td class="num heat" style="{style}">{esc(fmt_pct(v))}</td>')
        rows.append(f"<tr><th>{esc(_alpha(ap))}</th>{''.join(cells)}</tr>")
    body.append(
        Markup(
            f'<div class="grid"><table><thead>{head}</thead><tbody>{"".join(rows)}'
            "</tbody></table></div>"
        )
    )
    body.append(
        note(
            "The outlined cell is this run's setting. Kept share = tuples kept / all "
            f"{fmt_int(sens.n_tuples)} tuples; darker cells keep fewer."
        )
    )
    body.append(_simulation(run))
    return section("sensitivity", "Sensitivity to alpha", body)


def _simulation(run: ScreenRun) -> Markup:
    """The ``--calibrate`` tables: precision and recall of each screen at each alpha, for noise
    injected into a copy of the labels."""
    title = tag("h3", "Choosing alpha by simulation")
    cal = run.calibration
    if cal is None or not len(cal):
        return join(
            [
                title,
                note(
                    "Run `curate screen ... --calibrate` to inject known label noise "
                    "into a copy of the labels and see the precision and recall of "
                    "every screen at several alphas here."
                ),
            ]
        )
    parts = [
        title,
        tag(
            "p",
            "A copy of the labels got known noise (symmetric: any other class; "
            "class: the most similar class), then every screen ran again. Precision: "
            "share of rejections that hold a flipped label; recall: share of flipped "
            "labels caught. The data's own label noise counts as clean here, so "
            "precision is a lower bound.",
        ),
    ]
    for (kind, rate), part in cal.groupby(["noise", "rate"], sort=False):
        names = list(dict.fromkeys(part["screen"]))
        head = ["alpha"] + [f"{n}: share / precision / recall" for n in names]
        rows = []
        for alpha, at in part.groupby("alpha", sort=True):
            by = at.set_index("screen")
            rows.append(
                [_g(float(alpha))]
                + [
                    (
                        f"{fmt_pct(by.at[n, 'share'])} / {fmt_pct(by.at[n, 'precision'])} / "
                        f"{fmt_pct(by.at[n, 'recall'])}"
                    )
                    if n in by.index
                    else "\u2013"
                    for n in names
                ]
            )
        parts += [tag("h4", f"{kind} noise, rate {float(rate):g}"), table(head, rows)]
    return join(parts)


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:g}"


def _alpha(a: float) -> str:
    return f"{a:g}"


def _heat(x: float) -> str:
    """White (0: keeps the most in the grid) to orange (1: keeps the least)."""
    x = min(max(float(x), 0.0), 1.0)
    r, g, bl = 255, int(255 - 120 * x), int(255 - 200 * x)
    return f"#{r:02x}{g:02x}{bl:02x}"


# ---------------------------------------------------------------- rejections
def _rejections(run: ScreenRun, flags: pd.DataFrame, left_out: list[str]) -> Markup:
    s = run.scores
    n = len(s)
    rejected = n - int(s["keep"].sum())
    body: list[Any] = [
        tag(
            "p",
            f"{fmt_int(rejected)} of {fmt_int(n)} tuples rejected "
            f"({fmt_pct(rejected / n if n else None)}). A tuple with several reasons "
            "counts under each.",
        )
    ]
    if not len(flags.columns):
        body.append(note("No tuple was rejected."))
        return section("rejections", "Rejections", body)
    by_reason = counts_by_reason(flags, n)
    body.append(tag("h3", "By reason"))
    body.append(
        table(
            ["reason", "tuples", "share of all tuples"],
            [
                (chip(r), fmt_int(t), fmt_pct(sh, 2))
                for r, t, sh in by_reason.itertuples(index=False)
            ],
        )
    )
    body.append(figure(figures.reason_bar_figure(by_reason), "tuples per reason"))
    by_class = counts_by_class(s, flags)
    shown = by_class
    if len(by_class) > MAX_CLASSES:
        shown = by_class.sort_values("rejected", ascending=False).head(MAX_CLASSES).sort_index()
        left_out.append(
            f"The by-class table and chart show the {MAX_CLASSES} labels with most "
            f"rejections of {len(by_class):,} labels."
        )
    codes = list(flags.columns)
    body.append(tag("h3", "By class (anchor label)"))
    body.append(
        table(
            ["label", "tuples", "kept", "rejected", "rejected share", *[chip(c) for c in codes]],
            [
                (
                    lab,
                    fmt_int(r["tuples"]),
                    fmt_int(r["kept"]),
                    fmt_int(r["rejected"]),
                    fmt_pct(r["rejected_share"]),
                    *[fmt_int(r[c]) for c in codes],
                )
                for lab, r in shown.iterrows()
            ],
        )
    )
    body.append(
        figure(figures.class_bar_figure(shown, codes), "rejected share per class and reason")
    )
    body.append(_confusion(run, flags, left_out))
    return section("rejections", "Rejections", body)


def _confusion(run: ScreenRun, flags: pd.DataFrame, left_out: list[str]) -> Markup:
    title = tag(
        "h3",
        join(["Which expressions the data confuses: ", chip(NEGATIVE_TOO_CLOSE), " by label pair"]),
    )
    t_neg = _num((run.boundary or {}).get("t_neg"))
    conf = negative_confusion(run.scores, flags, t_neg)
    if conf is None:
        return join(
            [
                title,
                note(
                    f"No tuple was rejected as {NEGATIVE_TOO_CLOSE} (or the scores "
                    "carry no negative_label)."
                ),
            ]
        )
    flagged, total = conf
    if len(total.index) > MAX_CONFUSION or len(total.columns) > MAX_CONFUSION:
        rows = flagged.sum(axis=1).sort_values(ascending=False).index[:MAX_CONFUSION]
        cols = flagged.sum(axis=0).sort_values(ascending=False).index[:MAX_CONFUSION]
        flagged, total = (
            flagged.loc[sorted(rows), sorted(cols)],
            total.loc[sorted(rows), sorted(cols)],
        )
        left_out.append(
            f"The confusion table shows the {MAX_CONFUSION} labels with most "
            f"{NEGATIVE_TOO_CLOSE} pairs on each axis."
        )
    color = reason_color(NEGATIVE_TOO_CLOSE)
    head = Markup(
        "<tr><th>anchor \u2193 / negative \u2192</th>"
        + "".join(f"<th class=num>{esc(c)}</th>" for c in flagged.columns)
        + "</tr>"
    )
    rows = []
    for a in flagged.index:
        cells = []
        for c in flagged.columns:
            k, t = int(flagged.at[a, c]), int(total.at[a, c])
            share = k / t if t else 0.0
            alpha = min(1.0, share * 4) if k else 0.0
            text = f"{k:,} ({share:.0%})" if t else "\u2013"
            cells.append(
                f'<td class="num heat" style="background:{color}{int(alpha * 200):02x}">'
                f"{esc(text)}</td>"
            )
        rows.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
    return join(
        [
            title,
            tag(
                "p",
                "Pairs closer than T_neg in rejected tuples; in brackets, their "
                "share of all tuples with that label pair. Dark cells are expressions "
                "the backbone cannot tell apart on this data, or labels that are mixed up.",
            ),
            Markup(
                f'<div class="grid"><table><thead>{head}</thead><tbody>{"".join(rows)}'
                "</tbody></table></div>"
            ),
        ]
    )


# ---------------------------------------------------------------- faces
def faces_body(run: ScreenRun) -> list[Any]:
    """The face screens' section (:meth:`curate.screens.faces.FaceScreen.report`)."""
    f = run.faces
    if f is None:
        return [
            note(
                run.notes.get("faces", "faces.parquet is missing")
                + "; the side-face and occlusion screens did not run."
            )
        ]
    p = run.params
    max_yaw, max_occ = _num(p.get("max_yaw")), _num(p.get("max_occlusion"))
    found = f["face_found"].fillna(False).astype(bool) if "face_found" in f else None
    rows = [("images analysed", fmt_int(len(f)))]
    if found is not None:
        rows.append(("face not found", f"{fmt_int((~found).sum())} ({fmt_pct((~found).mean())})"))
    if "face_reason" in f:
        reason = f["face_reason"].astype("string").fillna("")
        for code in screens.get("faces").codes:
            k = int(reason.str.contains(code, regex=False).sum())
            rows.append((chip(code), f"{fmt_int(k)} ({fmt_pct(k / len(f) if len(f) else None)})"))
    rows.append(
        (
            "thresholds",
            f"|yaw| > {_g(max_yaw)}\u00b0 is a side face; occlusion > {_g(max_occ)} is occluded",
        )
    )
    body: list[Any] = [table(["", "images"], rows, cls="kv")]
    labels = (
        run.images["label"].reindex(f["image_id"]).to_numpy()
        if run.images is not None and "label" in run.images and "image_id" in f
        else None
    )
    if labels is not None and {"face_reject", "face_reason"} <= set(f.columns):
        by_class = rejects_by_class(f, labels)
        body.append(
            tag(
                "p",
                "Face-rejected images per expression class: a screen that rejects "
                "one expression more than the others biases the data against it.",
            )
        )
        body.append(
            table(
                [
                    "class",
                    "images",
                    "rejected",
                    "share",
                    chip("side_face"),
                    chip("occluded"),
                    chip("no_face"),
                ],
                [
                    (
                        r.label,
                        fmt_int(r.images),
                        fmt_int(r.rejected),
                        fmt_pct(r.share),
                        fmt_int(r.side_face),
                        fmt_int(r.occluded),
                        fmt_int(r.no_face),
                    )
                    for r in by_class.itertuples()
                ],
            )
        )
    if max_yaw is None or max_occ is None:
        body.append(
            note("run.json does not give max_yaw / max_occlusion, so thresholds are not drawn.")
        )
    body.append(figure(figures.faces_figure(f, max_yaw, max_occ), "yaw and occlusion histograms"))
    if (
        max_yaw is not None
        and max_occ is not None
        and {"yaw", "occlusion", "face_found"} <= set(f.columns)
    ):
        body.append(_face_sensitivity(run, f, max_yaw, max_occ))
    return body


def _face_sensitivity(run: ScreenRun, f: pd.DataFrame, max_yaw: float, max_occ: float) -> Markup:
    tuples = _build_tuples(run)
    sens = face_sensitivity(
        f,
        tuples,
        max_yaw=max_yaw,
        max_occlusion=max_occ,
        no_face=str(run.params.get("no_face", "reject")),
    )
    with_tuples = tuples is not None
    head = ["--max-yaw", "--max-occlusion", "images rejected"] + (
        ["tuples holding one"] if with_tuples else []
    )
    rows = []
    for r in sens.rows:
        own = r["max_yaw"] == max_yaw and r["max_occlusion"] == max_occ
        mark = (lambda x: tag("b", x)) if own else (lambda x: x)
        rows.append(
            [
                mark(_g(float(r["max_yaw"]))),
                mark(_g(float(r["max_occlusion"]))),
                mark(fmt_pct(float(r["images"]))),
            ]
            + ([mark(fmt_pct(float(r["tuples"])))] if with_tuples else [])
        )
    return join(
        [
            tag("h3", "Sensitivity to the face thresholds"),
            tag(
                "p",
                (
                    "Share of the images the face screens would reject at other thresholds (one moves, the "
                    "other stays at this run's value, in bold), by the screen's own rule"
                    + (
                        ", and share of the build's tuples that hold at least one of them (they are redrawn, "
                        "or rejected when the image is their anchor)"
                        if with_tuples
                        else ""
                    )
                    + ". Pick thresholds here, then re-run with --max-yaw / --max-occlusion; the analyses "
                    "come from the cache."
                ),
            ),
            table(head, rows),
        ]
    )


def _build_tuples(run: ScreenRun) -> pd.DataFrame | None:
    """The build's tuples.parquet (before any redraw), when the image table was found beside it."""
    if not run.images_origin:
        return None
    path = Path(run.images_origin).parent / "tuples.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path, columns=[c for c in ROLES if c in pq.read_schema(path).names])
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- galleries
def _galleries(
    run: ScreenRun, flags: pd.DataFrame, thumbs: Thumbnails, max_gallery: int, seed: int
) -> Markup:
    body: list[Any] = []
    if run.images is None:
        body.append(note(run.notes.get("images", "no image table") + "."))
    body += [
        tag("h3", "Most abnormal rejected tuples"),
        tuple_gallery(run, flags, thumbs, max_gallery),
        tag("h3", "Label suspects"),
        suspect_gallery(run, thumbs, max_gallery),
        tag("h3", "Images the image screens rejected (side faces, occluded faces, ...)"),
        image_screen_gallery(run, thumbs, max_gallery, seed),
    ]
    return section("galleries", "Galleries", body)
