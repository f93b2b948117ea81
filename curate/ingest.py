"""Ingest: turn an image folder or a manifest into the validated images table.

One row per input image, valid or not (columns documented in ``docs/tables.md``).
Input is checked here, once; later stages trust the table.

Label policy: labels are stripped of surrounding whitespace and lower-cased, so
``" Happy"`` and ``"happy"`` are the same class. An empty label, and in a manifest the
texts ``NaN``, ``None``, ``NA``, ``N/A``, ``null`` (any case;
:func:`curate.sources.is_missing_label`), give status ``no_label``.

Only regular files are read, at most :func:`curate.images.max_file_bytes` bytes each: a
FIFO, a device, a socket or a link loop gets status ``not_a_file`` and a name that is
not valid UTF-8 status ``bad_name``, so no input can block ingest or exhaust memory,
and every entry found has a row.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.images import DEFAULT_MAX_PIXELS, max_file_bytes, probe_image, read_image_file
from curate.io import FileTooLarge, NotARegularFile
from curate.limits import workers_for
from curate.sources import (
    Entry,
    absolute,
    bad_path_rows,
    display_path,
    entry_problem,
    folder_layout,
    has_bad_name,
    is_hidden,
    is_junk,
    is_missing,
    is_missing_label,
    manifest_paths,
    read_manifest,
    require_columns,
    resolve_paths,
    row_ref,
    source_kind,
    walk_entries,
)

IMAGE_COLUMNS = [
    "image_id",
    "path",
    "rel_path",
    "label",
    "split",
    "subject",
    "width",
    "height",
    "mode",
    "sha256",
    "status",
    "detail",
]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Validation:
    """What decoding one file told us."""

    width: int | None
    height: int | None
    mode: str | None
    sha256: str | None
    status: str
    detail: str | None


def ingest(
    source: str | os.PathLike[str],
    *,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
    subject_column: str = "subject",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Read ``source`` (folder or CSV/Parquet manifest) into the validated images table.

    Every file found (folder) or row given (manifest) gets a row with a ``status``:
    ``ok`` or a reason code, and a human-readable ``detail``.
    """
    entries = discover(
        source,
        path_column=path_column,
        label_column=label_column,
        split_column=split_column,
        subject_column=subject_column,
    )
    return validate(entries, max_pixels=max_pixels, workers=workers, progress=progress)


# --------------------------------------------------------------------------- discovery


def discover(
    source: str | os.PathLike[str],
    *,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
    subject_column: str = "subject",
) -> pd.DataFrame:
    """List the input images without decoding them; statuses for rows that cannot be images."""
    src = Path(source).expanduser()
    kind = source_kind(
        src,
        hint="pass an image folder (ROOT/<class>/<image> or "
        "ROOT/<split>/<class>/<image>) or a CSV/Parquet manifest",
    )
    if kind == "manifest":
        df = _discover_manifest(src, path_column, label_column, split_column, subject_column)
    else:  # any folder is read as a dataset laid out in class folders
        df = _discover_folder(src)
    df.insert(0, "image_id", np.arange(len(df), dtype=np.int64))
    _mark_duplicate_rows(df)
    return df


def _discover_folder(root: Path) -> pd.DataFrame:
    junk: list[Path] = []
    top = _entries(root, junk)
    dirs = [e.path for e in top if e.status is None and e.path.is_dir()]
    if not dirs:
        raise CurateError(
            f"no class folders in {root}",
            hint="lay images out as ROOT/<class>/<image> or ROOT/<split>/<class>/<image>",
        )
    layout = folder_layout(root, dirs)  # an error for a folder that mixes the two layouts
    split_layout = layout.kind == "split"
    rows: list[dict[str, object]] = []
    # Entries beside the class (or split) folders have no label: record them, never drop them.
    rows.extend(_unlabelled(root, [e for e in top if e.path not in dirs], split=None))
    for d in dirs:
        if split_layout:
            inner = _entries(d, junk)
            classes = [e.path for e in inner if e.status is None and e.path.is_dir()]
            rows.extend(
                _unlabelled(root, [e for e in inner if e.path not in classes], split=d.name)
            )
            for cls in classes:
                rows.extend(_rows_in_class(root, cls, split=d.name, junk=junk))
        else:
            rows.extend(_rows_in_class(root, d, split=None, junk=junk))
    df = pd.DataFrame(
        rows, columns=["path", "rel_path", "label", "split", "subject", "status", "detail"]
    )
    if df.empty:
        raise CurateError(
            f"no image files found under {root}",
            hint="check the folder; hidden files (starting with '.') are ignored",
        )
    layout.junk = sorted(set(junk))
    df.attrs["notes"] = layout.notes()
    df.attrs["layout"] = f"{layout.kind}: {layout.why}"
    return df


def _entries(folder: Path, junk: list[Path] | None = None) -> list[Entry]:
    """The visible entries of one folder (not recursive), sorted, each with its problem;
    junk files (:func:`curate.sources.is_junk`) are left out (and added to ``junk``)."""
    out = []
    for p in sorted(folder.iterdir()):
        if is_junk(p.name):
            if junk is not None and not is_hidden(p.name):
                junk.append(p)
            continue
        out.append(Entry(p, *(entry_problem(p) or (None, None))))
    return out


def _unlabelled(root: Path, entries: list[Entry], split: str | None) -> list[dict[str, object]]:
    why = "not inside a class folder, so it has no label"
    return [
        _row(
            root,
            e.path,
            label=None,
            split=split,
            status=e.status or "no_label",
            detail=e.detail or f"{'folder' if e.path.is_dir() else 'file'} is {why}",
        )
        for e in entries
    ]


def _rows_in_class(
    root: Path, cls_dir: Path, split: str | None, junk: list[Path] | None = None
) -> list[dict[str, object]]:
    label = _normalise_label(display_path(cls_dir.name))
    entries = walk_entries(cls_dir, junk=junk)
    resolved = resolve_paths([str(e.path) for e in entries])  # each folder resolved once
    return [
        _row(root, e.path, label=label, split=split, status=e.status, detail=e.detail, resolved=r)
        for e, r in zip(entries, resolved, strict=True)
    ]


def _row(
    root: Path,
    f: Path,
    *,
    label: str | None,
    split: str | None,
    status: str | None = None,
    detail: str | None = None,
    resolved: str | None = None,
) -> dict[str, object]:
    if has_bad_name(f) and status is None:
        status, detail = entry_problem(f) or ("bad_name", "the name is not valid UTF-8")
    return {
        "path": display_path(resolved if resolved is not None else absolute(f)),
        "rel_path": display_path(os.path.relpath(f, root)).replace(os.sep, "/"),
        "label": label,
        "split": None if split is None else display_path(split),
        "subject": None,
        "status": status,
        "detail": detail,
    }


def _discover_manifest(
    manifest: Path, path_column: str, label_column: str, split_column: str, subject_column: str
) -> pd.DataFrame:
    table = read_manifest(manifest)
    require_columns(table, manifest, {path_column: "--path-column", label_column: "--label-column"})
    rel, resolved = manifest_paths(table, path_column, manifest)
    _refuse_list_labels(table, label_column, manifest)
    labels = table[label_column].map(
        lambda v: None if is_missing_label(v) else _normalise_label(str(v))
    )
    df = pd.DataFrame(
        {
            "path": resolved,
            "rel_path": rel,
            "label": labels.tolist(),
            "split": _optional_str(table, split_column),
            "subject": _optional_str(table, subject_column),
            "status": None,
            "detail": None,
        }
    )
    empty_path = np.array([not p for p in rel], dtype=bool)
    for i in np.flatnonzero(empty_path).tolist():
        df.loc[i, ["status", "detail"]] = ["missing", f"{row_ref(manifest, i)}: the path is empty"]
    no_label = df["label"].isna().to_numpy() | df["label"].eq("").to_numpy()
    raw = table[label_column].tolist()
    for i in np.flatnonzero(no_label & ~empty_path).tolist():
        what = (
            "empty label"
            if is_missing(raw[i]) or not str(raw[i]).strip()
            else f"label {str(raw[i]).strip()!r}, which stands for a missing value"
        )
        df.loc[i, ["status", "detail"]] = [
            "no_label",
            f"{row_ref(manifest, i)}: {what} in column {label_column!r}",
        ]
    for i in bad_path_rows(table, path_column):
        df.loc[i, ["status", "detail"]] = [
            "bad_name",
            f"{row_ref(manifest, i)}: the path is not valid UTF-8 (shown with \\x escapes)",
        ]
    df.loc[no_label, "label"] = None
    known = {path_column, label_column, split_column, subject_column}
    renamed = []
    for col in table.columns:  # carry extra columns (e.g. a ground-truth label) through
        if col in known:
            continue
        name = str(col)
        while (
            name in df.columns or name in RESERVED_COLUMNS
        ):  # curate's own column: the user's keeps a prefix
            name = USER_PREFIX + name
        if name != col:
            renamed.append(f"{col} -> {name}")
        df[name] = table[col].to_numpy()
    if renamed:
        df.attrs["notes"] = [
            f"manifest columns named like curate's own were kept under a prefix: "
            f"{', '.join(renamed[:6])}" + (", ..." if len(renamed) > 6 else "")
        ]
    return df


USER_PREFIX = "user_"  # the prefix of a manifest column named like a column curate writes
# columns curate writes into the images table (IMAGE_COLUMNS) and later tables
RESERVED_COLUMNS = frozenset(
    {
        *IMAGE_COLUMNS,
        "duplicate_of",
        "exported",
        "kept",
        "reasons",
        "suspicion",
        "suggested_label",
        "original_label",
    }
)


def _refuse_list_labels(table: pd.DataFrame, label_column: str, manifest: Path) -> None:
    """A label that is a list, an array or a mapping (Parquet list columns) names no class."""
    for i, v in enumerate(table[label_column].tolist()):
        if isinstance(v, (list, tuple, dict, set, np.ndarray)):
            raise CurateError(
                f"{row_ref(manifest, i)}: the label in column {label_column!r} is a list "
                f"({str(v)[:60]}), not one class name; curate reads one label per image",
                hint="write one class name per row (for several labels per image, "
                "pick one, or add one row per label)",
            )


def _optional_str(table: pd.DataFrame, column: str) -> list[str | None]:
    if column not in table.columns:
        return [None] * len(table)
    return [
        None if is_missing(v) else display_path(str(v)).strip() or None
        for v in table[column].tolist()
    ]


def _normalise_label(label: str) -> str:
    """Labels compare as written by people: spaces around them, case and the Unicode form
    (NFC: an accent as one character or as a combining mark) do not matter."""
    return unicodedata.normalize("NFC", label.strip().lower())


def _mark_duplicate_rows(df: pd.DataFrame) -> None:
    """The same file listed twice keeps its first row; later rows say which one."""
    pending = df["status"].isna() & df["path"].ne("")
    dup = pending & df.duplicated("path", keep="first")
    if not dup.any():
        return
    first_id = df[pending].drop_duplicates("path").set_index("path")["image_id"]
    for i in np.flatnonzero(dup.to_numpy()):
        df.at[i, "status"] = "duplicate_row"
        df.at[i, "detail"] = (
            f"the same file is listed again: first listed as image_id {first_id[df.at[i, 'path']]}"
        )


# --------------------------------------------------------------------------- validation


def validate(
    entries: pd.DataFrame,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Decode every pending entry (in parallel), hash it, and mark content duplicates."""
    df = entries.copy()
    todo = np.flatnonzero(df["status"].isna().to_numpy())
    paths = df["path"].to_numpy()[todo].tolist()
    results = _validate_many(paths, max_pixels=max_pixels, workers=workers, progress=progress)
    width = np.full(len(df), np.nan)
    height = np.full(len(df), np.nan)
    mode: list[str | None] = [None] * len(df)
    sha: list[str | None] = [None] * len(df)
    status = df["status"].astype(object).to_numpy(copy=True)
    detail = df["detail"].astype(object).to_numpy(copy=True)
    for i, r in zip(todo, results, strict=True):
        width[i] = np.nan if r.width is None else r.width
        height[i] = np.nan if r.height is None else r.height
        mode[i], sha[i], status[i], detail[i] = r.mode, r.sha256, r.status, r.detail
    df["width"] = pd.array(width, dtype="Int64")
    df["height"] = pd.array(height, dtype="Int64")
    df["mode"] = mode
    df["sha256"] = sha
    df["status"] = status
    df["detail"] = detail
    _mark_content_duplicates(df)
    extra = [c for c in df.columns if c not in IMAGE_COLUMNS]
    out = df[IMAGE_COLUMNS + extra].reset_index(drop=True)
    out.attrs["notes"] = list(entries.attrs.get("notes", []))  # what discovery ignored or renamed
    if "layout" in entries.attrs:
        out.attrs["layout"] = entries.attrs["layout"]  # how a folder was read, and why
    return out


def _mark_content_duplicates(df: pd.DataFrame) -> None:
    """Byte-identical files: the first (lowest image_id) stays ok, the others point at it."""
    ok = df["status"].eq("ok")
    dup = ok & df.duplicated("sha256", keep="first")
    if not dup.any():
        return
    first = df[ok].drop_duplicates("sha256").set_index("sha256")
    for i in np.flatnonzero(dup.to_numpy()):
        keeper = first.loc[df.at[i, "sha256"]]
        df.at[i, "status"] = f"duplicate_of:{int(keeper['image_id'])}"
        same = (
            "same label"
            if keeper["label"] == df.at[i, "label"]
            else (f"CONFLICTING label {keeper['label']!r} vs {df.at[i, 'label']!r}")
        )
        df.at[i, "detail"] = f"byte-identical to {keeper['rel_path']} ({same})"


def _validate_many(
    paths: list[str], *, max_pixels: int, workers: int | None, progress: Progress | None
) -> list[Validation]:
    total = len(paths)
    if progress:
        progress(0, total)
    n_workers = (
        workers_for(workers, max(total, 1)) if workers is not None else min(os.cpu_count() or 1, 8)
    )
    if n_workers <= 1 or total < 256:
        out = []
        for k, p in enumerate(paths, 1):
            out.append(validate_file(p, max_pixels))
            if progress and (k % 256 == 0 or k == total):
                progress(k, total)
        return out
    chunk = 512
    chunks = [paths[i : i + chunk] for i in range(0, total, chunk)]
    out = []
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        for part in pool.map(_validate_chunk, chunks, [max_pixels] * len(chunks)):
            out.extend(part)
            if progress:
                progress(len(out), total)
    return out


def _validate_chunk(paths: list[str], max_pixels: int) -> list[Validation]:
    return [validate_file(p, max_pixels) for p in paths]


def validate_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Validation:
    """Read, hash and fully decode one file; never raises for a bad file, never blocks
    (only regular files are read) and reads at most :func:`curate.images.max_file_bytes`."""
    try:
        data = read_image_file(path, max_pixels)
    except FileNotFoundError:
        return Validation(None, None, None, None, "missing", f"file not found: {path}")
    except IsADirectoryError:
        return Validation(None, None, None, None, "not_an_image", "path is a folder, not a file")
    except NotARegularFile as exc:
        return Validation(
            None, None, None, None, "not_a_file", f"{exc.strerror}: curate reads regular files only"
        )
    except FileTooLarge as exc:
        return Validation(
            None,
            None,
            None,
            None,
            "too_large",
            f"the file has {exc.size:,} bytes, more than the limit of {max_file_bytes(max_pixels):,} "
            "(16 bytes per allowed pixel; raise --max-pixels)",
        )
    except PermissionError:
        return Validation(
            None,
            None,
            None,
            None,
            "unreadable",
            "permission denied: make the file readable (chmod +r)",
        )
    except OSError as exc:
        return Validation(None, None, None, None, "unreadable", f"cannot read file: {exc}")
    if not data:
        return Validation(None, None, None, None, "empty_file", "the file is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()  # the bytes are in memory for the decoder anyway
    probe = probe_image(data, max_pixels)
    return Validation(probe.width, probe.height, probe.mode, digest, probe.status, probe.detail)
