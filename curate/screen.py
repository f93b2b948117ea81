"""``screen``: embed the images of a build, apply the statistical boundary and the face
screens to every tuple, and write scores, kept/rejected tuples, suspect images, the
boundary and the run record (see ``docs/tables.md``)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from curate import screens as registry
from curate import sources
from curate.cache import OFF, resolve_cache_dir
from curate.errors import CurateError
from curate.io import (
    fingerprint_table,
    read_parquet,
    read_parquet_arrow,
    read_parquet_schema,
    run_record,
    write_json,
    write_parquet,
)
from curate.limits import seed_value, whole_number
from curate.outdir import Claim, claim_folder, require_complete
from curate.screens.base import Screen, ScreenContext, ScreenOutput, StageProgress
from curate.stats.nulls import CLASS_NULLS
from curate.stats.simulate import simulate_alpha
from curate.stats.statistical import Boundary, normalize
from curate.tuples import ROLES, redraw_tuples

if TYPE_CHECKING:
    from curate.ray_engine import RayEngine as Engine

SUSPECT_BASE_COLUMNS = ["image_id", "path", "rel_path", "label", "split"]
EMBEDDINGS_FILE = "embeddings.parquet"


@dataclass
class ScreenResult:
    """What :func:`screen` wrote and counted."""

    out_dir: Path
    kind: str
    n_images: int
    n_tuples: int
    n_kept: int
    n_rejected: int
    reasons: dict[str, int]
    boundary: Boundary | None
    backbone: str
    weights_source: str
    random_weights: bool
    n_embedded: int
    n_cached: int
    face_screens: bool
    n_redrawn: int = 0
    boundary_record: dict[str, Any] | None = None
    screens_run: list[str] = field(default_factory=list)
    outputs: dict[str, ScreenOutput] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    embeddings_file: Path | None = None  # embeddings.parquet, when embeddings were used


@dataclass
class _Embedded:
    emb: np.ndarray
    backbone: str
    weights_source: str
    fingerprint: str
    random_weights: bool
    n_computed: int
    n_cached: int


def screen(
    build_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    backbone: str | None = None,
    weights: str | None = None,
    embeddings: str | os.PathLike[str] | None = None,
    center: bool = True,
    scale: float = 1.0,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    seed: int = 0,
    redraw: bool = True,
    calibrate: bool = False,
    force: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: StageProgress | None = None,
    engine: Engine | None = None,
    representation: str = "auto",
    framing: str = "auto",
    amp: bool = False,
    **options: Any,
) -> ScreenResult:
    """Screen every tuple of ``build_dir`` (a ``curate build-tuples`` folder) into ``out_dir``.

    Runs every registered screen (:func:`curate.screens.registered`: image screens
    first, then tuple screens). ``options`` are the screens' settings by name (for
    example ``alpha_pos``, ``alpha_neg``, ``null``, ``max_yaw``, ``max_occlusion``,
    ``no_face``, ``skip_faces_screen``; :func:`curate.screens.defaults` lists them) and
    the representations' (a plug-in's; :func:`curate.representations.defaults`); every
    one is checked before any work and recorded, resolved, in ``run.json``.

    Embeddings come from ``embeddings`` (a Parquet file) when given, else from the
    representation ``representation`` (:mod:`curate.representations`: ``backbone``, the
    embedding of the backbone, see :func:`curate.backbone.load_backbone`, with faces
    framed from their landmarks per ``framing``; ``blendshapes``, the face's 52 blendshape
    scores; ``combined``; or ``auto``, the default: each measured on the dataset's own
    labels by a cross-validated probe and the best used,
    :func:`curate.representations.choose.represent`); they are written to
    ``out_dir/embeddings.parquet`` as computed, then centred (``center``) and normalised
    to the modulus ``scale``. Embeddings and face analyses are kept in the shared cache
    ``cache_dir`` (:func:`curate.cache.resolve_cache_dir`: None for the default user
    cache, ``"none"`` for no cache; ``docs/cache.md``), so another screen of the same
    images with other thresholds reuses them. ``progress(stage, done, total)`` reports
    the ``embed`` and ``faces`` stages. ``engine`` runs those per-image stages elsewhere,
    writing the same caches (:class:`curate.ray_engine.RayEngine`; None: this machine);
    it is no setting of the run (the results are the same), so a re-run with or without
    it needs no ``force``. ``amp`` runs the backbone under bfloat16 autocast on a CPU that
    computes bfloat16 natively (:func:`curate.backbone.autocast_precision`; elsewhere it
    stays float32 and says so); its embeddings are cached apart from the float32 ones.

    Images an image screen rejects leave the pool: with ``redraw`` every tuple that holds
    one as its positive or negative is redrawn for the same anchor from the remaining
    images (:func:`curate.tuples.redraw_tuples`), so one rejected face does not cost every
    tuple it was drawn into; tuples anchored on a rejected image are rejected.

    With ``calibrate`` known noise is injected into a copy of the labels (symmetric and
    class-dependent) and the precision and recall of every screen's rejections at several
    alphas go to ``calibration.parquet`` (:func:`curate.stats.simulate.simulate_alpha`), so
    alpha can be chosen from numbers. The HTML report is a later stage:
    :func:`curate.report.write_report` (the CLI runs it unless ``--no-report``).

    ``out_dir`` follows :mod:`curate.outdir`: new, empty, or a previous screen run (the
    same settings re-run; other settings need ``force``, and the result's ``notes`` say
    what was replaced). The caches live outside it (``cache_dir``);
    ``run.json`` is written last and says whether the run completed.
    """
    from curate import representations

    started = time.time()
    # every option checked before any work; the representations' options are flags too
    own = set(representations.options())
    settings = {
        **representations.resolve_settings({k: v for k, v in options.items() if k in own}),
        **registry.resolve_settings({k: v for k, v in options.items() if k not in own}),
    }
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise CurateError(f"--scale must be a positive number, got {scale}", hint="use --scale 1.0")
    seed = seed_value(seed)
    batch_size = whole_number(batch_size, "--batch-size", lo=1, hi=65_536)
    if workers is not None:
        whole_number(workers, "--workers", lo=0)
    settings.update(center=center, scale=float(scale), seed=seed)
    from curate.representations import choices as representation_choices
    from curate.representations.framing import check_framing

    if representation not in representation_choices():
        raise CurateError(
            f"unknown representation {representation!r}",
            hint=f"use --representation {' | '.join(representation_choices())}",
        )
    check_framing(framing)
    build = Path(build_dir).expanduser()
    cache_root = resolve_cache_dir(cache_dir)
    if Path(os.path.abspath(Path(out_dir).expanduser())) == Path(os.path.abspath(build)):
        raise CurateError(
            f"--out {out_dir} is the build folder itself; screening would overwrite its run.json",
            hint="choose a separate --out folder",
        )
    active = [s for s in registry.registered() if s.enabled(settings)]
    images, tuples, build_run = _read_build(build)
    claimed = {
        "build_dir": str(build.resolve()),
        "backbone": backbone,
        "weights": sources.path_setting(weights),
        "embeddings": None if embeddings is None else str(Path(embeddings).expanduser().resolve()),
        "redraw": redraw,
        "calibrate": calibrate,
        "representation": representation,
        "framing": framing,
        "amp": bool(amp),
        **settings,
    }
    with claim_folder(
        out_dir,
        "screen",
        settings=claimed,
        inputs=[build, embeddings],
        force=force,
        owned=output_files(),
    ) as claim:
        req = _Request(
            build=build,
            settings=settings,
            backbone=backbone,
            weights=weights,
            embeddings=embeddings,
            center=center,
            scale=scale,
            batch_size=batch_size,
            workers=workers,
            device=device,
            seed=seed,
            redraw=redraw,
            calibrate=calibrate,
            cache_root=cache_root,
            progress=progress,
            started=started,
            engine=engine,
            representation=representation,
            framing=framing,
            amp=bool(amp),
        )
        return _screen_into(claim, req, images, tuples, build_run, active)


def output_files() -> list[str]:
    """The files a screen run writes into its folder (the report's included): a new run
    into the folder deletes them first (:mod:`curate.outdir`)."""
    names = [
        "scores.parquet",
        "kept.parquet",
        "rejected.parquet",
        "images_suspect.parquet",
        "run.json",
        "calibration.parquet",
        "report.html",
        EMBEDDINGS_FILE,
    ]
    for s in registry.registered():
        names.extend(n for n in s.files if n not in names)
    return names


@dataclass(frozen=True)
class _Request:
    """One screen run's inputs, checked by :func:`screen`: what every piece of the run reads."""

    build: Path
    settings: dict[str, Any]
    backbone: str | None
    weights: str | None
    embeddings: str | os.PathLike[str] | None
    center: bool
    scale: float
    batch_size: int
    workers: int | None
    device: str
    seed: int
    redraw: bool
    calibrate: bool
    cache_root: Path | None
    progress: StageProgress | None
    started: float
    engine: Engine | None = None
    representation: str = "auto"
    framing: str = "auto"
    amp: bool = False


@dataclass
class _Space:
    """The vectors the screens judge in (normalised: ``emb``), where they came from
    (``got``), the representation chosen (or None for an embeddings file or no
    embedding screen), and the face analysis and head it made on the way."""

    got: _Embedded | None = None
    chosen: Any = None
    faces: pd.DataFrame | None = None
    head: Any = None
    emb: np.ndarray | None = None


def _screen_into(
    claim: Claim,
    req: _Request,
    images: pd.DataFrame,
    tuples: pd.DataFrame,
    build_run: dict[str, Any],
    active: list[Screen],
) -> ScreenResult:
    out = claim.path
    kind = "quadruplet" if "negative2" in tuples.columns else "triplet"
    used, rows = tuple_members(images, tuples)
    space = _embed(req, used, active)
    ctx = ScreenContext(
        images=used,
        tuples=tuples,
        rows=rows,
        settings=req.settings,
        out_dir=out,
        embeddings=space.emb,
        progress=req.progress,
        cache_dir=req.cache_root,
        engine=req.engine,
    )
    if space.chosen is not None and space.chosen.probe is not None:
        ctx.shared["probe"] = space.chosen.probe  # the label screen's suggested_confidence
    if space.faces is not None:
        ctx.shared["faces"] = space.faces  # the face screens read it instead of analysing again
    if space.head is not None:
        ctx.shared["head"] = (
            space.head
        )  # the network's classification head: the label screen's second judge
    redrawn = _run_screens(ctx, active, build_run, req)

    keep, reason = tuple_verdicts(ctx, active)
    scores = _scores_table(ctx, active, redrawn, keep, reason)
    _write_tables(out, ctx, active, space, scores, keep)
    if req.calibrate:
        _write_calibration(out, ctx, req, space)
    run = run_record(
        "screen",
        _run_params(req, ctx, active, space, kind),
        inputs=_run_inputs(req, space, build_run, tuples),
        counts=_run_counts(ctx, active, space, scores, keep, redrawn),
        started=req.started,
    )
    claim.finish(run)
    return _result(claim, req, ctx, active, space, scores, keep, redrawn, kind, run)


def tuple_members(
    images: pd.DataFrame, tuples: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The images the tuples use (sorted by ``image_id``) and, per role, each tuple's row
    in that table."""
    roles = [r for r in ROLES if r in tuples.columns]
    ids = np.unique(np.concatenate([tuples[r].to_numpy(np.int64) for r in roles]))
    used = images.set_index("image_id").loc[ids].reset_index()
    return used, {role: np.searchsorted(ids, tuples[role].to_numpy(np.int64)) for role in roles}


def _embed(req: _Request, used: pd.DataFrame, active: list[Screen]) -> _Space:
    """The embeddings file's vectors, or the chosen representation's when a screen needs
    embeddings, normalised; an empty space otherwise."""
    space = _Space()
    if req.embeddings is not None:
        space.got = _embeddings_from_file(Path(req.embeddings), used)
    elif any(s.needs_embeddings for s in active):
        space.got, space.chosen, space.faces, space.head = _represent(
            used,
            req.cache_root,
            req.representation,
            req.framing,
            req.backbone,
            req.weights,
            req.device,
            req.seed,
            req.batch_size,
            req.workers,
            req.progress,
            req.engine,
            req.settings,
            req.amp,
        )
    if space.got is not None:
        space.emb = normalize(space.got.emb, center=req.center, scale=req.scale)
    return space


def _run_screens(
    ctx: ScreenContext, active: list[Screen], build_run: dict[str, Any], req: _Request
) -> _Redrawn | None:
    """Run the image screens, redraw the tuples they broke (``req.redraw``), then run the
    tuple screens; their results go to ``ctx.results``."""
    redrawn = None
    for level in ("image", "tuple"):
        if level == "tuple":
            redrawn = _redraw(ctx, active, build_run, req.seed) if req.redraw else None
        for s in active:
            if s.level == level:
                result = s.run(ctx)
                result.validate(s, ctx.n_rows(s.level))
                ctx.results[s.name] = result
    return redrawn


def _scores_table(
    ctx: ScreenContext,
    active: list[Screen],
    redrawn: _Redrawn | None,
    keep: np.ndarray,
    reason: np.ndarray,
) -> pd.DataFrame:
    """``scores.parquet``: every tuple with each tuple screen's columns, the members'
    reasons, what was redrawn, and the verdict."""
    scores = ctx.tuples.copy()
    for s in active:
        if s.level != "tuple":
            continue
        res = ctx.results[s.name]
        if res.table is not None:
            for col in res.table.columns:
                scores[col] = res.table[col].to_numpy()
        score_col, reject_col, reason_col = s.columns()
        scores[score_col] = res.score
        scores[reject_col] = res.reject
        scores[reason_col] = pd.array(res.reason, dtype="string")
    if any(s.level == "image" for s in active):
        scores["member_reasons"] = pd.array(member_reasons(ctx, active), dtype="string")
    if redrawn is not None:
        scores["redrawn"] = redrawn.redrawn
        scores["redrawn_members"] = pd.array(redrawn.members, dtype="string")
    scores["keep"] = keep
    scores["reason"] = pd.array(reason, dtype="string")
    return scores


def _write_tables(
    out: Path,
    ctx: ScreenContext,
    active: list[Screen],
    space: _Space,
    scores: pd.DataFrame,
    keep: np.ndarray,
) -> None:
    """The run's tables: scores, kept, rejected, suspect images, the embeddings used, and
    each screen's own outputs."""
    write_parquet(scores, out / "scores.parquet")
    write_parquet(ctx.tuples[keep].reset_index(drop=True), out / "kept.parquet")
    write_parquet(ctx.tuples[~keep].reset_index(drop=True), out / "rejected.parquet")
    write_parquet(suspect_images(ctx, active, keep), out / "images_suspect.parquet")
    if space.got is not None:
        chosen = space.chosen
        write_embeddings_table(
            ctx.images,
            space.got.emb,
            out / EMBEDDINGS_FILE,
            representation=chosen.name if chosen is not None else space.got.backbone,
            missing_reason=chosen.features.missing_reason if chosen is not None else None,
        )
    for s in active:  # the outputs of screens that did not run are gone: the claim removed them
        for name, obj in s.outputs(ctx.results[s.name], ctx).items():
            (write_parquet if isinstance(obj, pd.DataFrame) else write_json)(obj, out / name)


def _write_calibration(out: Path, ctx: ScreenContext, req: _Request, space: _Space) -> None:
    """``calibration.parquet`` (``--calibrate``): the screens' precision and recall under
    injected noise."""
    if space.emb is None:
        raise CurateError("--calibrate needs embeddings", hint="do not skip the screens that embed")
    settings = req.settings
    null = settings["null"] if settings["null"] in CLASS_NULLS else "class_empirical"
    write_parquet(
        simulate_alpha(
            space.emb,
            ctx.labels,
            null=null,
            scale=req.scale,
            prior_floor=settings["label_prior_floor"],
            seed=req.seed,
        ),
        out / "calibration.parquet",
    )


def _run_params(
    req: _Request, ctx: ScreenContext, active: list[Screen], space: _Space, kind: str
) -> dict[str, Any]:
    """``run.json``'s params: the resolved settings of the run."""
    got, chosen, embeddings = space.got, space.chosen, req.embeddings
    return {
        "build_dir": str(req.build.resolve()),
        "backbone": got.backbone if got is not None else req.backbone,
        "weights": req.weights,
        "embeddings": str(Path(embeddings).resolve()) if embeddings is not None else None,
        "batch_size": req.batch_size,
        "workers": req.workers,
        "device": req.device,
        "redraw": req.redraw,
        "engine": req.engine.describe() if req.engine is not None else None,
        "calibrate": req.calibrate,
        "cache_dir": str(req.cache_root) if req.cache_root is not None else OFF,
        "representation": (
            chosen.record()
            if chosen is not None
            else {
                "setting": req.representation,
                "used": "embeddings-file" if embeddings is not None else None,
            }
        ),
        "framing": req.framing,
        "amp": req.amp,
        "label_evidence": (
            ctx.results["label"].artifacts.get("evidence") if "label" in ctx.results else None
        ),
        **req.settings,
        "kind": kind,
        "screens": [s.name for s in active],
    }


def _run_inputs(
    req: _Request, space: _Space, build_run: dict[str, Any], build_tuples: pd.DataFrame
) -> dict[str, Any]:
    """``run.json``'s inputs: the build, its tuples as drawn, and the weights."""
    got = space.got
    return {
        "build_dir": str(req.build.resolve()),
        "build_fingerprint": (build_run.get("inputs") or {}).get("fingerprint"),
        "tuples_fingerprint": fingerprint_table(build_tuples),
        "weights_source": got.weights_source if got else None,
        "weights_fingerprint": got.fingerprint if got else None,
        "random_weights": got.random_weights if got else False,
    }


def _run_counts(
    ctx: ScreenContext,
    active: list[Screen],
    space: _Space,
    scores: pd.DataFrame,
    keep: np.ndarray,
    redrawn: _Redrawn | None,
) -> dict[str, Any]:
    """``run.json``'s counts."""
    got, chosen = space.got, space.chosen
    faces_out = ctx.results.get("faces")
    return {
        "images": len(ctx.images),
        "embedded": got.n_computed if got else 0,
        "embeddings_cached": got.n_cached if got else 0,
        "tuples": len(scores),
        "kept": int(keep.sum()),
        "rejected": int((~keep).sum()),
        "rejected_by_reason": _reason_counts(scores["reason"]),
        "rejected_images_by_screen": {
            s.name: int(ctx.results[s.name].reject.sum()) for s in active if s.level == "image"
        },
        "face_rejected_images": int(faces_out.reject.sum()) if faces_out is not None else None,
        "tuples_redrawn": int(redrawn.redrawn.sum()) if redrawn is not None else 0,
        "images_without_representation": int(chosen.features.missing.sum())
        if chosen is not None
        else 0,
        "tuples_with_rejected_member": int(redrawn.n_lost) if redrawn is not None else None,
    }


def _result(
    claim: Claim,
    req: _Request,
    ctx: ScreenContext,
    active: list[Screen],
    space: _Space,
    scores: pd.DataFrame,
    keep: np.ndarray,
    redrawn: _Redrawn | None,
    kind: str,
    run: dict[str, Any],
) -> ScreenResult:
    got, chosen, out = space.got, space.chosen, claim.path
    return ScreenResult(
        out_dir=out,
        kind=kind,
        n_images=len(ctx.images),
        n_tuples=len(scores),
        n_kept=int(keep.sum()),
        n_rejected=int((~keep).sum()),
        reasons=dict(run["counts"]["rejected_by_reason"]),  # counted once, for run.json
        boundary=_boundary_of(ctx),
        backbone=got.backbone if got else str(req.backbone),
        weights_source=got.weights_source if got else "none",
        random_weights=got.random_weights if got else False,
        n_embedded=got.n_computed if got else 0,
        n_cached=got.n_cached if got else 0,
        face_screens=ctx.results.get("faces") is not None,
        screens_run=[s.name for s in active],
        outputs=ctx.results,
        run=run,
        n_redrawn=int(redrawn.redrawn.sum()) if redrawn is not None else 0,
        boundary_record=(
            ctx.results["boundary"].artifacts.get("record") if "boundary" in ctx.results else None
        ),
        notes=([claim.note] if claim.note else [])
        + (
            [f"representation: {chosen.sentence}"] + chosen.features.notes
            if chosen is not None
            else []
        )
        + [n for res in ctx.results.values() for n in res.artifacts.get("notes", [])],
        embeddings_file=out / EMBEDDINGS_FILE if got is not None else None,
    )


@dataclass
class _Redrawn:
    redrawn: np.ndarray  # bool per tuple
    members: np.ndarray  # for redrawn tuples: which members were replaced and why (role:code)
    n_lost: int  # tuples that still hold a rejected image (anchor rejected, or no draw)


def _redraw(
    ctx: ScreenContext, active: list[Screen], build_run: dict[str, Any], seed: int
) -> _Redrawn | None:
    """Replace, in ``ctx``, the tuples whose positive or negative an image screen rejected."""
    bad = np.zeros(len(ctx.images), dtype=bool)
    for s in active:
        if s.level == "image":
            bad |= ctx.results[s.name].reject
    if not bad.any():
        return None
    params = build_run.get("params")
    if not isinstance(params, dict):
        params = {}
    before = member_reasons(ctx, active)
    ids = ctx.images["image_id"].to_numpy(np.int64)
    done = redraw_tuples(
        ctx.tuples,
        ctx.images,
        ids[bad],
        seed=seed + 1,
        positive_subject=params.get("positive_subject", "any"),
        negative_subject=params.get("negative_subject", "any"),
    )
    ctx.tuples = done.tuples
    ctx.rows = {r: np.searchsorted(ids, done.tuples[r].to_numpy(np.int64)) for r in ctx.rows}
    return _Redrawn(
        done.redrawn,
        np.where(done.redrawn, before, np.array(None, dtype=object)).astype(object),
        int(done.lost.sum()),
    )


def tuple_verdicts(ctx: ScreenContext, active: list[Screen]) -> tuple[np.ndarray, np.ndarray]:
    """Every tuple's ``keep`` and ``reason``: the codes of the tuple screens (in registry
    order), then the codes of the image screens that rejected one of its members (sorted)."""
    reason = np.full(len(ctx.tuples), None, dtype=object)
    for s in active:
        if s.level == "tuple":
            res = ctx.results[s.name]
            for t in np.flatnonzero(res.reject):
                reason[t] = res.reason[t] if reason[t] is None else f"{reason[t]};{res.reason[t]}"
    image_codes = _member_codes(ctx, active)
    if image_codes is not None:
        for t in np.flatnonzero([bool(c) for c in image_codes]):
            base = [] if reason[t] is None else reason[t].split(";")
            reason[t] = ";".join(base + sorted(image_codes[t] - set(base)))
    keep = pd.isna(pd.Series(reason)).to_numpy()
    return keep, reason


def member_reasons(ctx: ScreenContext, active: list[Screen]) -> np.ndarray:
    """Per tuple, which member an image screen rejected and why: ``;``-joined ``role:code``
    (for example ``positive:occluded;negative:side_face``), None when no member was."""
    per_image = _image_codes(ctx, active)
    out = np.full(len(ctx.tuples), None, dtype=object)
    if per_image is None:
        return out
    bad = {i: sorted(c) for i, c in enumerate(per_image) if c}
    for role, r in ctx.rows.items():
        for t in np.flatnonzero(np.isin(r, list(bad))):
            part = ";".join(f"{role}:{code}" for code in bad[int(r[t])])
            out[t] = part if out[t] is None else f"{out[t]};{part}"
    return out


def _image_codes(ctx: ScreenContext, active: list[Screen]) -> list[set[str]] | None:
    """Per image row, the reason codes the image screens gave it (None: no image screen ran)."""
    per_image: list[set[str]] | None = None
    for s in active:
        if s.level != "image":
            continue
        res = ctx.results[s.name]
        codes = [
            set(r.split(";")) if rej else set()
            for rej, r in zip(res.reject, res.reason, strict=True)
        ]
        per_image = (
            codes if per_image is None else [a | b for a, b in zip(per_image, codes, strict=True)]
        )
    return per_image


def _member_codes(ctx: ScreenContext, active: list[Screen]) -> list[set[str]] | None:
    """Per tuple, the reason codes image screens gave to any of its members."""
    per_image = _image_codes(ctx, active)
    if per_image is None or not any(per_image):
        return None
    bad = np.flatnonzero([bool(c) for c in per_image])
    hit = np.zeros(len(ctx.tuples), dtype=bool)
    for r in ctx.rows.values():
        hit |= np.isin(r, bad)
    out: list[set[str]] = [set() for _ in range(len(ctx.tuples))]
    for t in np.flatnonzero(hit):
        out[t] = set().union(*(per_image[r[t]] for r in ctx.rows.values()))
    return out


def suspect_images(ctx: ScreenContext, active: list[Screen], keep: np.ndarray) -> pd.DataFrame:
    """``images_suspect.parquet``: one row per image in a tuple, most suspect label first.

    Columns: the image; the columns of the image screens (``<prefix>_score``, ``_reject``,
    ``_reason`` and their ``suspect_columns``: the label screen's ``suggested_label``,
    ``suspicion``, ``label_pvalue``, ...; the face screen's ``yaw``, ``occlusion``, ...); the
    tuples it is in, the tuples rejected because of it (a failed pair it belongs to, or its
    own image-screen reject) and their share ``rejected_share``; the tuple screens' per-image
    columns (``mean_z``).

    Sorted by the score of the screen that ranks images (the label screen's
    ``suspicion_logit``, most suspect first, unscored last): the label ranking is its own
    ranking, whatever the face and hygiene screens say. Without it: images rejected by an
    image screen first, then ``mean_z``, then ``rejected_share``."""
    n = len(ctx.images)
    image_bad = np.zeros(n, dtype=bool)
    for s in active:
        if s.level == "image":
            image_bad |= ctx.results[s.name].reject
    n_tuples = np.zeros(n, dtype=np.int64)
    n_rejected = np.zeros(n, dtype=np.int64)
    for role, r in ctx.rows.items():
        blamed = image_bad[r].copy()
        for s in active:
            if s.level == "tuple":
                res = ctx.results[s.name]
                blamed |= res.blame[role] if res.blame is not None else res.reject
        n_tuples += np.bincount(r, minlength=n)
        n_rejected += np.bincount(r, weights=blamed, minlength=n).astype(np.int64)
    out = ctx.images[SUSPECT_BASE_COLUMNS].copy()
    for s in active:
        if s.level != "image":
            continue
        res = ctx.results[s.name]
        score_col, reject_col, reason_col = s.columns()
        out[score_col] = res.score
        out[reject_col] = res.reject
        out[reason_col] = pd.array(res.reason, dtype="object")
        if res.table is not None:
            for col in s.suspect_columns:
                if col in res.table.columns and col not in out.columns:
                    out[col] = res.table[
                        col
                    ].array  # by position; keeps nullable dtypes (Int64 ids)
    out["n_tuples"] = n_tuples
    out["n_rejected"] = n_rejected
    out["rejected_share"] = n_rejected / np.maximum(n_tuples, 1)
    for s in active:
        res = ctx.results[s.name]
        if s.level == "tuple" and res.image_columns is not None:
            for col in res.image_columns.columns:
                out[col] = res.image_columns[col].to_numpy()
    ranker = next((s for s in active if s.ranks_images), None)
    if ranker is not None:
        key = np.nan_to_num(np.asarray(ctx.results[ranker.name].score, dtype=float), nan=-np.inf)
        out["_key"] = key
        order, ascending = ["_key", "image_id"], [False, True]
    else:
        out["_key"] = image_bad
        order = (
            ["_key"]
            + (["mean_z"] if "mean_z" in out.columns else [])
            + ["rejected_share", "image_id"]
        )
        ascending = [False] * (len(order) - 1) + [True]
    out = out.sort_values(order, ascending=ascending, kind="mergesort")
    return out.drop(columns="_key").reset_index(drop=True)


def _boundary_of(ctx: ScreenContext) -> Boundary | None:
    res = ctx.results.get("boundary")
    return None if res is None else res.artifacts.get("boundary")


def _read_build(build: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    hint = "run `curate build-tuples SOURCE --out DIR` first and pass DIR"
    if not build.is_dir():
        raise CurateError(
            f"build folder not found: {build}", hint=sources.not_found_hint(str(build), hint)
        )
    kind = sources.source_kind(build, hint=hint)
    if kind in ("labelled_folder", "image_folder"):
        raise CurateError(
            f"{build} looks like an image folder, not the output of `curate build-tuples`",
            hint=f"run `curate build-tuples {build} --out BUILD` on it first, then "
            "`curate screen BUILD --out SCREEN`",
        )
    if kind == "screen":
        found = sources.screen_build_dir(build)
        raise CurateError(
            f"{build} is the output of `curate screen`, not of `curate build-tuples`",
            hint=f"pass its build folder{f' ({found})' if found else ''} instead",
        )
    if kind == "run":
        raise CurateError(
            f"{build} is a fine-tuning run folder, not the output of `curate build-tuples`",
            hint="pass a build-tuples folder; use a run with --weights RUN",
        )
    require_complete(build, what="build folder")
    images = read_parquet(build / "images.parquet", what="images table")
    tuples = read_parquet(build / "tuples.parquet", what="tuples table")
    build_run = sources.read_run_json(build)
    need_i = {"image_id", "path", "rel_path", "label", "split", "sha256", "status"}
    need_t = {"tuple_id", "anchor", "positive", "negative"}
    for name, df, need in (("images.parquet", images, need_i), ("tuples.parquet", tuples, need_t)):
        missing = sorted(need - set(df.columns))
        if missing:
            raise CurateError(
                f"{build / name} lacks columns {', '.join(missing)}",
                hint="re-run curate build-tuples with this version of curate",
            )
    if len(tuples) == 0:
        raise CurateError(
            f"{build / 'tuples.parquet'} has no tuples", hint="check the build's run.json"
        )
    known = set(images["image_id"].tolist())
    for role in ROLES:
        if role in tuples.columns:
            bad = tuples.loc[~tuples[role].isin(known), "tuple_id"]
            if len(bad):
                raise CurateError(
                    f"tuples {bad.head(5).tolist()} refer to {role} images not in images.parquet",
                    hint="re-run curate build-tuples",
                )
    members = np.unique(np.concatenate([tuples[r].to_numpy() for r in ROLES if r in tuples]))
    not_ok = images[images["image_id"].isin(members) & images["status"].ne("ok")]
    if len(not_ok):
        raise CurateError(
            f"tuples use images whose status is not ok: {not_ok['rel_path'].head(5).tolist()}",
            hint="re-run curate build-tuples",
        )
    return images, tuples, build_run


def _represent(
    used: pd.DataFrame,
    cache_root: Path | None,
    representation: str,
    framing: str,
    backbone: str | None,
    weights: str | None,
    device: str,
    seed: int,
    batch_size: int,
    workers: int | None,
    progress: StageProgress | None,
    engine: Engine | None,
    settings: dict[str, Any],
    amp: bool = False,
) -> tuple[_Embedded, Any, pd.DataFrame | None, Any]:
    """The chosen representation's vectors, the choice, the face analysis it made (or None)
    and the network's classification head on the backbone's vectors (or None)."""
    from curate import representations
    from curate.representations.base import RepresentationContext
    from curate.representations.choose import represent

    ctx = RepresentationContext(
        images=used,
        cache_dir=cache_root,
        progress=progress,
        engine=engine,
        settings={
            "backbone": backbone,
            "weights": weights,
            "device": device,
            "seed": seed,
            "batch_size": batch_size,
            "workers": workers,
            "framing": framing,
            "amp": amp,
            "face_model": settings.get("face_model"),
            **{name: settings[name] for name in representations.options()},
        },
    )
    chosen = represent(ctx, representation, seed=seed)
    back = ctx.shared.get("backbone")
    f = chosen.features
    name = back.details["backbone"] if back is not None else f.name
    return (
        _Embedded(
            f.vectors,
            name,
            f.weights_source or f.name,
            f.weights_fingerprint or "-",
            f.random_weights,
            f.n_computed,
            f.n_cached,
        ),
        chosen,
        ctx.shared.get("faces"),
        ctx.shared.get("head"),
    )


def _embeddings_from_file(path: Path, used: pd.DataFrame) -> _Embedded:
    from curate.io import file_sha256

    names = read_parquet_schema(path, what="embeddings file").names
    if "embedding" not in names or not ({"image_id", "path"} & set(names)):
        raise CurateError(
            f"{path} needs an `embedding` column and an `image_id` or `path` column; "
            f"it has {', '.join(map(str, names))}",
            hint="write one row per image: image_id (or path) and embedding (list of floats)",
        )
    # the keys first; the embeddings column-wise by Arrow (a million rows in a second)
    table = read_parquet(
        path, what="embeddings file", columns=["image_id" if "image_id" in names else "path"]
    )
    if "image_id" in table.columns:
        key, want = "image_id", used["image_id"]
        got_keys = table["image_id"].astype("int64")
    else:
        key = "path"
        got_keys = table["path"].astype(str).map(os.path.normpath)
        for col in ("path", "rel_path"):  # absolute paths, else paths relative to the source
            want = used[col].astype(str).map(os.path.normpath)
            if got_keys.isin(want).any():
                break
    dup = got_keys[got_keys.duplicated()]
    if len(dup):
        raise CurateError(
            f"{path} has several embeddings for {key} {dup.head(5).tolist()}",
            hint="keep one row per image",
        )
    lookup = pd.Series(np.arange(len(table)), index=got_keys.to_numpy())
    missing = used.loc[~want.isin(lookup.index).to_numpy(), "rel_path"]
    if len(missing):
        raise CurateError(
            f"{path} has no embedding for {len(missing)} of the {len(used)} images in the "
            f"tuples, e.g. {', '.join(missing.head(10).astype(str))}",
            hint=f"embed every image of images.parquet; match them by {key}",
        )
    selected = lookup.loc[want.to_numpy()].to_numpy()
    emb = _embedding_matrix(path, selected)
    if emb is None:  # not one length of lists of numbers: find and name the bad cells
        emb = _embedding_rows(path, used, selected)
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = used.loc[~finite, "rel_path"].head(5).tolist()
        raise CurateError(f"embeddings in {path} contain NaN or infinity for {bad}")
    return _Embedded(
        emb, "embeddings-file", f"file:{path.resolve()}", file_sha256(path), False, 0, 0
    )


def _embedding_matrix(path: Path, rows: np.ndarray) -> np.ndarray | None:
    """Rows ``rows`` of the ``embedding`` column as a float32 matrix, read column-wise by
    Arrow (no Python object per row); None unless every one of them is a non-empty list of
    numbers and all have one length."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = read_parquet_arrow(path, what="embeddings file", columns=["embedding"]).column(
        "embedding"
    )
    arr = col.combine_chunks().take(pa.array(rows, type=pa.int64()))
    listy = (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    )
    if not listy or not (
        pa.types.is_floating(arr.type.value_type) or pa.types.is_integer(arr.type.value_type)
    ):
        return None
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if (
        len(arr) == 0
        or arr.null_count
        or pc.list_flatten(arr).null_count
        or lengths[0] == 0
        or np.any(lengths != lengths[0])
    ):
        return None
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(values.reshape(len(arr), int(lengths[0])), dtype=np.float32)


def _embedding_rows(path: Path, used: pd.DataFrame, selected: np.ndarray) -> np.ndarray:
    """The embeddings cell by cell, raising a :class:`CurateError` that names the images whose
    cell is not a list of numbers, or not as long as the others."""
    table = read_parquet(path, what="embeddings file", columns=["embedding"])
    rows = table["embedding"].iloc[selected].map(_as_vector)
    not_vector = rows.isna().to_numpy()
    if not_vector.any():
        bad = used.loc[not_vector, "rel_path"].head(5).tolist()
        first = table["embedding"].iloc[selected[np.flatnonzero(not_vector)[0]]]
        raise CurateError(
            f"embeddings in {path} are not lists of numbers for {len(bad)} image(s), e.g. {bad} "
            f"(got {type(first).__name__} {str(first)[:60]!r})",
            hint="write each embedding as a list of floats (Parquet list<float>)",
        )
    lens = rows.map(len)
    if lens.nunique() != 1:
        common = int(lens.mode().iloc[0])
        bad = used.loc[(lens != common).to_numpy(), "rel_path"].head(5).tolist()
        raise CurateError(
            f"embeddings in {path} have different lengths ({sorted(set(lens))}); "
            f"not {common} long: {', '.join(bad)}",
            hint="give every image an embedding of the same length",
        )
    return np.stack(rows.to_numpy())


def _as_vector(v: Any) -> np.ndarray | None:
    """An embedding cell as a 1-d float32 array, or None when it is not a list of numbers
    (None, text, nested lists, booleans)."""
    if not isinstance(v, (list, tuple, np.ndarray)):
        return None
    arr = np.asarray(v)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "fiu":
        return None
    return arr.astype(np.float32)


def write_embeddings_table(
    images: pd.DataFrame,
    emb: np.ndarray,
    path: Path,
    *,
    representation: str | None = None,
    missing_reason: list[str | None] | None = None,
) -> Path:
    """``embeddings.parquet``: ``image_id``, ``path``, ``label`` and ``embedding``, a
    fixed-size list of float32 (Arrow ``fixed_size_list<float>[d]``), one row per image
    in the tuples, as the representation (or ``--embeddings``) gave them, before centring;
    ``representation``, the representation that made them (also in the file's metadata,
    key ``curate.representation``), and ``missing_reason``, why an image has no vector of
    its own (a face without landmarks has no blendshapes: it holds the others' mean), else null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.io import atomic_path

    vectors = np.ascontiguousarray(emb, dtype=np.float32)
    table = pa.table(
        {
            "image_id": pa.array(images["image_id"].to_numpy(np.int64)),
            "path": pa.array(images["path"].astype(str).tolist(), pa.string()),
            "label": pa.array(images["label"].astype("string").tolist(), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), vectors.shape[1]
            ),
            "representation": pa.array([representation] * len(images), pa.string()),
            "missing_reason": pa.array(
                missing_reason if missing_reason is not None else [None] * len(images), pa.string()
            ),
        }
    )
    table = table.replace_schema_metadata({"curate.representation": representation or ""})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _reason_counts(reason: pd.Series) -> dict[str, int]:
    codes = reason.dropna().str.split(";").explode()
    return {str(k): int(v) for k, v in codes.value_counts().sort_index().items()}
