"""``curate screen`` and ``curate export``: thin wrappers over :func:`curate.screen.screen`
and :func:`curate.export.export`."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._app import CACHE_DIR_HELP, FORCE_HELP, app, console, handles_errors, safe
from curate.cli._choices import RAY_ACTORS_HELP, RAY_HELP, NullOpt, ray_engine
from curate.cli._progress import stage_bars
from curate.errors import CurateError
from curate.export import FORMATS, ExportResult, export
from curate.io import loads_json
from curate.representations import choices as representation_choices
from curate.screen import ScreenResult, screen
from curate.screens import options as screen_options

OPT = screen_options()  # defaults and help of every screen option come from the screens
OPT_WITH_FLAG = ("alpha_pos", "alpha_neg", "null", "max_yaw", "max_occlusion", "no_face",
                 "skip_face_screens", "face_model", "alpha_label", "label_prior_floor",
                 "label_max_class_share",
                 "skip_label_screen", "min_pixel_sim", "max_not_face", "skip_quality_screen",
                 "skip_not_face_screen", "skip_near_duplicate_screen")


class NoFaceOpt(str, Enum):
    reject = "reject"
    keep = "keep"


class DropLeakedOpt(str, Enum):
    none = "none"
    test = "test"
    train = "train"


class FormatOpt(str, Enum):
    imagefolder = "imagefolder"
    csv = "csv"
    parquet = "parquet"
    hf = "hf"


assert {f.value for f in FormatOpt} == set(FORMATS)

# the other options' defaults are the library functions' own
_SCREEN = {n: p.default for n, p in inspect.signature(screen).parameters.items()}
_EXPORT = {n: p.default for n, p in inspect.signature(export).parameters.items()}


@app.command("screen", short_help="Embed, screen every tuple, sort into kept and rejected.")
@handles_errors
def screen_cmd(
    build_dir: Annotated[Path, typer.Argument(metavar="BUILD_DIR", help="Output folder of `curate build-tuples` (images.parquet, tuples.parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (scores, kept/rejected tuples, suspect images, boundary, report).")],
    backbone: Annotated[str | None, typer.Option(help="timm model name used as feature extractor (default: the bundled model).")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights: a .safetensors/.pth file, a curate fine-tuning run folder, a model name that `curate models` lists, or 'none' for random weights. Default: timm's pretrained weights from the local cache.")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="Parquet with image_id or path, and embedding (list of floats); no backbone is loaded.")] = None,
    representation: Annotated[str, typer.Option(metavar="|".join(representation_choices()), help="The space the label verdicts are made in: backbone (the embedding), blendshapes (the face's 52 blendshape scores), combined, or auto: measure each on the dataset's labels by a cross-validated probe and use the best (docs/representations.md).")] = _SCREEN["representation"],
    framing: Annotated[str, typer.Option(metavar="auto|face|full", help="What the backbone sees: face cut out from its landmarks, the full picture, or auto: the face when faces fill under 80% of the picture.")] = _SCREEN["framing"],
    amp: Annotated[bool, typer.Option(help="Embed under bfloat16 autocast on a CPU that computes bfloat16 natively (AVX-512 BF16, AMX, Arm BF16); elsewhere float32, with a note. Cached apart from float32 embeddings.")] = _SCREEN["amp"],
    alpha_pos: Annotated[float, typer.Option(help=OPT["alpha_pos"].help)] = OPT["alpha_pos"].default,
    alpha_neg: Annotated[float, typer.Option(help=OPT["alpha_neg"].help)] = OPT["alpha_neg"].default,
    null: Annotated[NullOpt, typer.Option(help=OPT["null"].help)] = NullOpt(OPT["null"].default),
    no_center: Annotated[bool, typer.Option("--no-center", help="Do not subtract the dataset mean before normalising.")] = not _SCREEN["center"],
    scale: Annotated[float, typer.Option(help="Modulus s the embeddings are normalised to.")] = _SCREEN["scale"],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = _SCREEN["batch_size"],
    workers: Annotated[int | None, typer.Option(help="Decoding processes (default: by device and CPU count).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = _SCREEN["device"],
    seed: Annotated[int, typer.Option(help="Seed of random pairs (and of random weights).")] = _SCREEN["seed"],
    cache_dir: Annotated[str | None, typer.Option(metavar="DIR", help=CACHE_DIR_HELP)] = None,
    max_yaw: Annotated[float, typer.Option(help=OPT["max_yaw"].help)] = OPT["max_yaw"].default,
    max_occlusion: Annotated[float, typer.Option(help=OPT["max_occlusion"].help)] = OPT["max_occlusion"].default,
    no_face: Annotated[NoFaceOpt, typer.Option(help=OPT["no_face"].help)] = NoFaceOpt(OPT["no_face"].default),
    skip_face_screens: Annotated[bool, typer.Option("--skip-face-screens", help=OPT["skip_face_screens"].help)] = OPT["skip_face_screens"].default,
    alpha_label: Annotated[float, typer.Option(help=OPT["alpha_label"].help)] = OPT["alpha_label"].default,
    label_prior_floor: Annotated[float, typer.Option(help=OPT["label_prior_floor"].help)] = OPT["label_prior_floor"].default,
    label_max_class_share: Annotated[float, typer.Option(help=OPT["label_max_class_share"].help)] = OPT["label_max_class_share"].default,
    skip_label_screen: Annotated[bool, typer.Option("--skip-label-screen", help=OPT["skip_label_screen"].help)] = OPT["skip_label_screen"].default,
    min_pixel_sim: Annotated[float, typer.Option(help=OPT["min_pixel_sim"].help)] = OPT["min_pixel_sim"].default,
    skip_near_duplicate_screen: Annotated[bool, typer.Option("--skip-near-duplicate-screen", help=OPT["skip_near_duplicate_screen"].help)] = OPT["skip_near_duplicate_screen"].default,
    max_not_face: Annotated[float, typer.Option(help=OPT["max_not_face"].help)] = OPT["max_not_face"].default,
    skip_not_face_screen: Annotated[bool, typer.Option("--skip-not-face-screen", help=OPT["skip_not_face_screen"].help)] = OPT["skip_not_face_screen"].default,
    skip_quality_screen: Annotated[bool, typer.Option("--skip-quality-screen", help=OPT["skip_quality_screen"].help + " Its thresholds: --option quality_min_edges=4 etc. (docs/hygiene.md).")] = OPT["skip_quality_screen"].default,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Inject known label noise into a copy of the labels and write the precision and recall of every screen at several alphas (calibration.parquet, shown in the report).")] = _SCREEN["calibrate"],
    redraw: Annotated[bool, typer.Option(help="Redraw tuples whose positive or negative an image screen rejected, from the remaining images.")] = _SCREEN["redraw"],
    face_model: Annotated[str | None, typer.Option(help=OPT["face_model"].help)] = OPT["face_model"].default,
    option: Annotated[list[str] | None, typer.Option("--option", help="NAME=VALUE for a screen option that has no flag of its own (plug-in screens; docs/screens.md). Repeatable.")] = None,
    report: Annotated[bool, typer.Option(help="Write report.html (curate report SCREEN_DIR writes it later).")] = True,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    ray_actors: Annotated[int | None, typer.Option(help=RAY_ACTORS_HELP)] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Embed every image, apply the statistical boundary and face screens, and sort tuples into kept and rejected."""
    with stage_bars({"embed": "embedding images", "faces": "face screens",
                     "hygiene": "decoding for the hygiene screens"}) as bars:
        result = screen(
            build_dir, out, backbone=backbone, weights=weights, embeddings=embeddings,
            representation=representation, framing=framing, amp=amp,
            alpha_pos=alpha_pos, alpha_neg=alpha_neg, null=null.value, center=not no_center,
            scale=scale, batch_size=batch_size, workers=workers, device=device, seed=seed,
            cache_dir=cache_dir, max_yaw=max_yaw, max_occlusion=max_occlusion, no_face=no_face.value,
            skip_face_screens=skip_face_screens, face_model=face_model, alpha_label=alpha_label,
            label_prior_floor=label_prior_floor, label_max_class_share=label_max_class_share,
            skip_label_screen=skip_label_screen,
            min_pixel_sim=min_pixel_sim, skip_near_duplicate_screen=skip_near_duplicate_screen,
            max_not_face=max_not_face, skip_not_face_screen=skip_not_face_screen,
            skip_quality_screen=skip_quality_screen, redraw=redraw,
            calibrate=calibrate, force=force, engine=ray_engine(ray, ray_actors, device),
            progress=bars.update, **parse_options(option or []),
        )
    from curate.report import write_report  # matplotlib: only when a report is written

    report_path = write_report(result.out_dir) if report else None
    render_summary(result, report_path)


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs of ``--option``; values read as JSON when they parse (numbers,
    true/false, null), else as text."""
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise CurateError(f"--option {pair!r} is not NAME=VALUE", hint="for example --option min_side=24")
        if name in OPT_WITH_FLAG:
            raise CurateError(f"--option {name}=... duplicates a flag",
                              hint=f"use --{name.replace('_', '-')} {text}")
        try:
            out[name] = loads_json(text)
        except ValueError:
            out[name] = text
    return out


def render_summary(result: ScreenResult, report_path: Path | None = None) -> None:
    """Kept and rejected tuples by reason, the boundary, and warnings."""
    b = result.boundary
    if result.random_weights:
        console.print("[bold red]warning: the backbone has RANDOM weights (--weights none); "
                      "distances and rejections are meaningless for real curation.[/]")
    table = Table(title=f"{result.n_tuples:,} {result.kind}s screened", show_edge=False)
    table.add_column("outcome")
    table.add_column("tuples", justify="right")
    table.add_column("share", justify="right")
    share = lambda n: f"{n / result.n_tuples:.1%}" if result.n_tuples else "-"  # noqa: E731
    table.add_row("[green]kept[/]", f"{result.n_kept:,}", share(result.n_kept))
    table.add_row("[red]rejected[/]", f"{result.n_rejected:,}", share(result.n_rejected))
    for reason, n in sorted(result.reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {safe(reason)}", f"{n:,}", share(n))
    console.print(table)
    rec = result.boundary_record or {}
    if b is not None and rec.get("class_nulls"):
        cn = rec["class_nulls"]
        t_pos = [c["t_pos"] for c in cn["same"] if c["t_pos"] is not None]
        t_neg = [c["t_neg"] for c in cn["pairs"] if c["t_neg"] is not None]
        console.print(f"boundary ({rec['null']} null: {len(cn['same'])} classes, {len(cn['pairs'])} "
                      f"class pairs): T_pos {min(t_pos):.3f}-{max(t_pos):.3f}, "
                      f"T_neg {min(t_neg):.3f}-{max(t_neg):.3f}")
    elif b is not None:
        d_null = f"{b.d_null:.1f}" if b.d_null is not None else "fitted"
        console.print(
            f"boundary ({b.null} null, d={b.d}, d_null={d_null}): mu={b.mu:.3f} sigma={b.sigma:.3f} "
            f"T_pos={b.t_pos:.3f} T_neg={b.t_neg:.3f}")
    cal = rec.get("calibration") or {}
    if cal.get("share_above_t_pos") is not None:
        console.print(
            f"calibration on {cal['n_pairs']:,} random {cal['pairs'].replace('_', '-')} pairs: "
            f"{cal['share_above_t_pos']:.1%} above T_pos (nominal {cal['nominal_alpha_pos']:g}), "
            f"{cal['share_below_t_neg']:.1%} below T_neg (nominal {cal['nominal_alpha_neg']:g})")
    if result.n_redrawn:
        console.print(f"redrew {result.n_redrawn:,} tuple(s) whose positive or negative an image "
                      "screen rejected")
    images_out = result.run.get("counts", {}).get("rejected_images_by_screen") or {}
    if images_out:
        console.print("images rejected: " + ", ".join(f"{safe(k)} {v:,}" for k, v in images_out.items())
                      + f" of {result.n_images:,}")
    faces_out = result.outputs.get("faces")
    by_class = faces_out.artifacts.get("rejects_by_class") if faces_out is not None else None
    if by_class:
        render_face_rejects(by_class)
    console.print(f"images: {result.n_images:,} ({result.n_embedded:,} embedded, "
                  f"{result.n_cached:,} from cache) with {safe(result.backbone)} "
                  f"[dim]({safe(result.weights_source)})[/]")
    rep = result.run.get("params", {}).get("representation") or {}
    if rep.get("summary"):
        console.print(f"representation: {safe(rep['summary'])}")
    for note in result.notes:
        if not note.startswith("representation: "):
            console.print(f"[yellow]note:[/] {safe(note)}")
    console.print(f"wrote {safe(str(result.out_dir))}/: scores.parquet, kept.parquet, "
                  "rejected.parquet, images_suspect.parquet, boundary.json, run.json"
                  + (", embeddings.parquet" if result.embeddings_file else "")
                  + (", faces.parquet" if result.face_screens else "")
                  + (", calibration.parquet" if result.run["params"].get("calibrate") else "")
                  + (", report.html" if report_path else ""))


def render_face_rejects(rows: list[dict]) -> None:
    """The face screens' rejections per expression class (``rejects_by_class``)."""
    table = Table(title="face-rejected images by class", show_edge=False)
    for col, justify in (("class", "left"), ("images", "right"), ("rejected", "right"),
                         ("share", "right"), ("side_face", "right"), ("occluded", "right"),
                         ("no_face", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(safe(str(r["label"])), f"{r['images']:,}", f"{r['rejected']:,}",
                      f"{r['share']:.1%}" if r["images"] else "-",
                      *(f"{r[c]:,}" for c in ("side_face", "occluded", "no_face")))
    console.print(table)


@app.command("export", short_help="Export the surviving images for other trainers.")
@handles_errors
def export_cmd(
    screen_dir: Annotated[Path, typer.Argument(metavar="SCREEN_DIR", help="Output folder of `curate screen`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the filtered dataset to: new, empty, or an earlier export.")],
    max_suspicion: Annotated[float | None, typer.Option(help="Also leave out images whose label suspicion (probability that the label is wrong) is at least this.")] = _EXPORT["max_suspicion"],
    relabel: Annotated[bool, typer.Option("--relabel", help="Export images whose only fault is their label under their suggested label when its confidence is at least --relabel-confidence (the manifest keeps original_label).")] = False,
    relabel_confidence: Annotated[float, typer.Option(help="With --relabel: relabel only suspects whose suggested_confidence is at least this (docs/label.md).")] = _EXPORT["relabel_confidence"],
    relabel_rest: Annotated[str, typer.Option(metavar="reject|keep", help="With --relabel: label suspects below --relabel-confidence stay left out (reject) or are kept under their own label (keep).")] = _EXPORT["relabel_rest"],
    format: Annotated[FormatOpt, typer.Option("--format", help="imagefolder (OUT/[split/]label/file), a csv/parquet manifest, or hf: a Hugging Face `datasets` imagefolder of every screened image with the columns kept, reasons, suspicion and suggested_label.")] = FormatOpt(_EXPORT["format"]),
    copy: Annotated[bool, typer.Option("--copy", help="Copy files instead of symlinking them (imagefolder).")] = False,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    include_unscreened: Annotated[bool, typer.Option("--include-unscreened", help="Also export valid images that are in no tuple (never screened).")] = False,
    drop_leaked: Annotated[DropLeakedOpt, typer.Option("--drop-leaked", help="Near-duplicates in two splits (leakage): test leaves out the copies outside the training split (named train/training), train the copies in it, none keeps both.")] = DropLeakedOpt(_EXPORT["drop_leaked"]),
    decisions: Annotated[Path | None, typer.Option("--decisions", metavar="FILE", help="A curator's decisions.csv from the report's review view: keep puts a rejected image back, drop leaves an image out, relabel exports it under the new label (original_label kept); the other images follow the screens.")] = None,
) -> None:
    """Write the images that survive the screens as an ImageFolder or a manifest for other trainers."""
    result = export(screen_dir, out, max_suspicion=max_suspicion, relabel=relabel, relabel_confidence=relabel_confidence,
                    relabel_rest=relabel_rest,
                    format=format.value, copy=copy, force=force,
                    include_unscreened=include_unscreened, drop_leaked=drop_leaked.value, decisions=decisions)
    if format is FormatOpt.hf:
        kept = int(result.manifest["kept"].sum())
        console.print(f"wrote [green]{result.n_exported:,}[/] images as a Hugging Face dataset: "
                      f"{kept:,} with kept=True, {result.n_exported - kept:,} with kept=False and their reasons")
        console.print(f"load it with datasets.load_dataset({str(result.target)!r})")
        _print_leak(result, drop_leaked.value)
        return
    why = [f"{n:,} rejected by the {safe(name)} screen" for name, n in result.n_image_rejected.items()]
    if max_suspicion is not None:
        why.append(f"{result.n_suspect:,} with suspicion >= {max_suspicion:g}")
    console.print(f"exported [green]{result.n_exported:,}[/] images, left out [red]{result.n_excluded:,}[/]"
                  + (f" ({'; '.join(why)}; an image can be counted twice)" if why else ""))
    if relabel:
        console.print(f"relabelled {result.n_relabelled:,} image(s) to their suggested label (suggested_confidence "
                      f">= {relabel_confidence:g}); label suspects below it: "
                      + ("kept under their own label" if relabel_rest == "keep" else "left out"))
    if result.decisions:
        d = result.decisions
        console.print(f"curator's decisions: {d['keep']:,} keep ({d['kept_against_screens']:,} of them rejected by "
                      f"the screens), {d['drop']:,} drop, {d['relabel']:,} relabel")
    _print_leak(result, drop_leaked.value)
    if result.n_unscreened:
        how = "exported" if include_unscreened else "left out (--include-unscreened adds them)"
        console.print(f"[yellow]{result.n_unscreened:,} valid image(s) are in no tuple, never screened: {how}[/]")
    for label, n in sorted(result.per_label.items()):
        folder = result.folders.get("label", {}).get(label, label)
        console.print(f"  {safe(label)}: {n:,}" + (f" (folder {safe(folder)})" if folder != label else ""))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {safe(note)}")
    console.print(f"wrote {safe(str(result.target))}")


def _print_leak(result: ExportResult, drop_leaked: str) -> None:
    """The export summary's line on leakage (near-duplicates exported in two splits)."""
    if result.n_dropped_leaked:
        console.print(f"left out {result.n_dropped_leaked:,} image(s) with a near-duplicate in another "
                      f"split (--drop-leaked {drop_leaked})")
    if result.n_leaked:
        console.print(f"[yellow]leakage: {result.n_leaked:,} exported image(s) have a near-duplicate exported in "
                      "another split[/]" + ("; --drop-leaked test leaves the evaluation copies out"
                                            if drop_leaked == "none" else ""))
