"""Sources: what kind of path a command was given, and how folders and manifests are read.

Every stage that takes a path asks :func:`source_kind`, and every manifest is read by
:func:`read_manifest`, so the stages agree on what a path is and on what a missing
value is. The kinds, tried in this order:

``run``
    a fine-tuning run folder (``config.json`` and ``model.safetensors``), see
    :mod:`curate.runs`;
``screen``
    a ``curate screen`` output folder (``kept.parquet``; its ``run.json`` names the
    build folder, see :func:`screen_build_dir`);
``build``
    a ``curate build-tuples`` output folder (``images.parquet``);
``labelled_folder``
    an image folder with class folders, ``ROOT/<class>/<image>`` or
    ``ROOT/<split>/<class>/<image>`` (see :mod:`curate.ingest`);
``image_folder``
    any other folder: images without labels;
``manifest``
    a CSV or Parquet file with one row per image.

Missing values in a manifest: an empty CSV cell, a null Parquet value, ``None`` and NaN
are missing (:func:`is_missing`); any text, ``"NA"`` included, is a value, except in the
label column, where the texts of :data:`MISSING_LABEL_TEXTS` (``NaN``, ``None``, ``NA``,
``N/A``, ``null``, ``<NA>``, any case) are missing labels too (:func:`is_missing_label`):
spreadsheets and pandas write them for empty cells, and they are never expressions.

Folder walks (:func:`walk_entries`) list every entry, not only the readable ones: a
FIFO, a device, a broken link, a link loop or a name that is not valid UTF-8 comes
back with a reason, so the stages record it instead of hanging on it or dropping it.
Linked folders are followed, each real folder once, except a link to a folder that holds
the dataset itself (``/``, a parent: the walk would never end) or to a pseudo file system
(``/proc``, ``/sys``, ``/dev``), which is recorded with status ``not_a_file``. Files that
operating systems leave in folders (:data:`JUNK_NAMES`: ``Thumbs.db``, ``desktop.ini``,
``.DS_Store``, ...) and hidden files are never read and never change how a folder is read.

How a folder is read (class folders, or split folders of class folders) is decided by
:func:`folder_layout`, which says why; a folder that mixes both layouts is an error naming
the paths and the fix.
"""

from __future__ import annotations

import csv
import errno
import os
import stat
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.io import describe_mode, open_regular, read_json_file

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# the files that mark the folders curate writes
BUILD_IMAGES_FILE = "images.parquet"
BUILD_TUPLES_FILE = "tuples.parquet"
SCREEN_KEPT_FILE = "kept.parquet"
RUN_JSON_FILE = "run.json"
RUN_CONFIG_FILE = "config.json"
RUN_MODEL_FILE = "model.safetensors"

KINDS = ("run", "screen", "build", "labelled_folder", "image_folder", "manifest")
# files that file managers and operating systems leave in folders: never images, never labels
JUNK_NAMES = frozenset(
    {
        "thumbs.db",
        "ehthumbs.db",
        "ehthumbs_vista.db",
        "desktop.ini",
        ".ds_store",
        "icon\r",
        ".directory",
        "$recycle.bin",
        "system volume information",
        "__macosx",
    }
)
# folder names that mean a split of the data, not a class
SPLIT_NAMES = frozenset(
    {
        "train",
        "training",
        "val",
        "valid",
        "validation",
        "dev",
        "test",
        "testing",
        "publictest",
        "privatetest",
        "holdout",
    }
)
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev", "/run")
MISSING_LABEL_TEXTS = frozenset({"nan", "none", "na", "n/a", "null", "<na>"})


def source_kind(source: str | os.PathLike[str], *, hint: str) -> str:
    """The kind of ``source`` (one of :data:`KINDS`, see the module doc).

    Raises :class:`CurateError` when ``source`` does not exist (with ``hint``) or is a
    file that is not a CSV/Parquet manifest.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise CurateError(f"source not found: {src}", hint=not_found_hint(str(source), hint))
    if src.is_dir():
        if is_run_dir(src):
            return "run"
        if (src / SCREEN_KEPT_FILE).is_file():
            return "screen"
        if (src / BUILD_IMAGES_FILE).is_file():
            return "build"
        return "labelled_folder" if class_folders(src) else "image_folder"
    if src.suffix.lower() in MANIFEST_SUFFIXES:
        try:
            open_regular(src).close()
        except OSError as exc:
            raise CurateError(
                f"cannot read manifest {src}: {exc.strerror or exc}",
                hint="pass a regular CSV or Parquet file",
            ) from exc
        return "manifest"
    raise CurateError(
        f"cannot read {src}: expected a folder, a .csv or a .parquet manifest",
        hint="point SOURCE at the image folder or at its manifest",
    )


def not_found_hint(given: str, hint: str) -> str:
    """The fix for a path that does not exist: ``hint``, or what the text looks like (a
    URL, which curate never downloads; a ``~user`` that names no user; a path whose
    ``~`` a shell did not expand because it was quoted or not at the start)."""
    text = str(given).strip()
    if "://" in text[:16] or text.lower().startswith(("www.", "hf://", "s3://", "gs://")):
        return "it looks like a URL: curate reads local files only; download it first and pass the local path"
    if text.startswith("~") and os.path.expanduser(text) == text:
        return f"{text.split('/')[0]} names no user on this machine: write the folder out in full"
    if "~" in text and not text.startswith("~"):
        return f"'~' is expanded only at the start of a path: write the path out in full ({hint})"
    return hint


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with a run's ``config.json`` and ``model.safetensors``."""
    p = Path(path)
    return p.is_dir() and (p / RUN_CONFIG_FILE).is_file() and (p / RUN_MODEL_FILE).is_file()


def run_dir_problem(path: str | os.PathLike[str]) -> str:
    """Why the folder ``path`` is not a fine-tuning run, in words (for error messages)."""
    p = Path(path)
    for name in (RUN_CONFIG_FILE, RUN_MODEL_FILE):
        f = p / name
        try:
            st = os.stat(f)
        except FileNotFoundError:
            return f"it has no {name}"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
        if not stat.S_ISREG(st.st_mode):
            return f"its {name} is {describe_mode(st.st_mode)}, not a regular file"
    return "it holds config.json and model.safetensors"


def is_hidden(name: str) -> bool:
    """Files and folders whose name starts with a dot are never read."""
    return name.startswith(".")


def is_junk(name: str) -> bool:
    """A hidden file or one that operating systems leave in folders (:data:`JUNK_NAMES`)."""
    return is_hidden(name) or name.lower() in JUNK_NAMES


def class_folders(root: Path) -> list[Path]:
    """The visible sub-folders of ``root``, sorted (class or split folders)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_junk(p.name))


@dataclass
class Layout:
    """How :func:`folder_layout` reads a folder: ``split`` (``ROOT/<split>/<class>/<image>``)
    or ``class`` (``ROOT/<class>/<image>``), why, and the junk files it ignored."""

    kind: str
    why: str
    junk: list[Path]

    def notes(self) -> list[str]:
        if not self.junk:
            return []
        names = sorted({p.name for p in self.junk})
        return [
            f"ignored {len(self.junk):,} file(s) that operating systems leave in folders "
            f"({', '.join(display_path(n) for n in names[:4])}), e.g. {display_path(self.junk[0])}"
        ]


def folder_layout(root: Path, dirs: list[Path]) -> Layout:
    """Decide whether the first-level folders ``dirs`` of ``root`` are split folders (each
    holds only class folders) or class folders (each holds images), ignoring junk files.

    A mix is a :class:`CurateError` that names the paths and the fix: images directly in
    a folder named like a split, or beside sub-folders named like classes (a half-moved
    folder), and split-like folders beside class folders when their names say so.
    """
    junk: list[Path] = []
    images: dict[Path, list[str]] = {}
    subs: dict[Path, list[str]] = {}
    for d in dirs:
        imgs, folders = [], []
        for name in sorted(os.listdir(d)):
            if is_junk(name):
                if not is_hidden(name):
                    junk.append(d / name)
                continue
            p = d / name
            if p.is_dir():
                folders.append(name)
            elif Path(name).suffix.lower() in IMAGE_SUFFIXES:
                imgs.append(name)
        images[d], subs[d] = imgs, folders
    split_like = [d for d in dirs if subs[d] and not images[d]]
    class_like = [d for d in dirs if images[d]]
    top_names = {_key(d.name) for d in dirs}
    inner_names = {_key(n) for d in split_like for n in subs[d]}
    for d in (
        class_like
    ):  # images beside folders: a split folder with stray images, or a half-moved class
        shared = sorted(n for n in subs[d] if _key(n) in top_names | inner_names)
        if subs[d] and (_key(d.name) in SPLIT_NAMES or shared):
            raise CurateError(
                f"mixed folder layout: {display_path(d)} holds images directly (e.g. {display_path(images[d][0])}) "
                f"beside folders ({', '.join(display_path(n) for n in (shared or subs[d])[:4])}), so it is neither "
                "a class folder nor a split folder of class folders",
                hint=f"move the images of {display_path(d)} into the class folder they belong to "
                f"({display_path(d)}/<class>/), or the folders out of it",
            )
    if split_like and class_like:
        named = [
            d
            for d in split_like
            if _key(d.name) in SPLIT_NAMES or {_key(n) for n in subs[d]} & top_names
        ]
        if named:
            d = named[0]
            raise CurateError(
                f"mixed folder layout: {display_path(d)} holds only folders ({', '.join(subs[d][:4])}), like a "
                f"split folder of ROOT/<split>/<class>/<image>, but {display_path(class_like[0])} holds images "
                "directly, like a class folder of ROOT/<class>/<image>",
                hint="use one layout: move every class folder into a split folder (ROOT/<split>/<class>/), or "
                f"move the class folders out of {display_path(d)} (ROOT/<class>/)",
            )
    if dirs and len(split_like) == len(dirs):
        return Layout(
            "split",
            "every first-level folder holds only folders: ROOT/<split>/<class>/<image>",
            junk,
        )
    return Layout("class", "first-level folders hold images: ROOT/<class>/<image>", junk)


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip().lower()


@dataclass(frozen=True)
class Entry:
    """One entry of a folder walk: ``status`` None for a regular file (or a link to one),
    else the images-table reason code (``missing``, ``not_a_file``, ``bad_name``) and a
    ``detail`` in words."""

    path: Path
    status: str | None = None
    detail: str | None = None


def has_bad_name(path: str | os.PathLike[str]) -> bool:
    """True when the path is not valid UTF-8 (Python holds such bytes as surrogates), so it
    cannot be stored in a table."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as text that can be stored and printed: bytes that are not UTF-8 become
    ``\\xNN`` escapes (the file cannot be opened by this name; see :func:`has_bad_name`)."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def absolute(path: str | os.PathLike[str]) -> str:
    """The absolute path with links resolved where they resolve; a link loop or a broken
    link keeps its own absolute name (``Path.resolve`` raises for a loop)."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def path_setting(value: str | None) -> str | None:
    """A setting that may name a file or folder (``--weights``): an existing path resolved,
    so two spellings of one file are one setting; anything else (``none``, a name) as is."""
    if value is None or value.lower() == "none" or not Path(value).expanduser().exists():
        return value
    return absolute(Path(value).expanduser())


def entry_problem(path: Path) -> tuple[str, str] | None:
    """(status, detail) when ``path`` is no regular file to read (for :class:`Entry`)."""
    if has_bad_name(path):
        return (
            "bad_name",
            f"the name {display_path(path.name)!r} is not valid UTF-8 "
            "(shown with \\x escapes): rename the file",
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        target = os.readlink(path) if path.is_symlink() else "?"
        return ("missing", f"broken symbolic link to {display_path(target)}")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ("not_a_file", "a symbolic link loop (the link leads back to itself)")
        return ("unreadable", f"cannot stat the file: {exc.strerror or exc}")
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return ("not_a_file", f"{describe_mode(st.st_mode)}, not a regular file")


def walk_entries(
    root: Path, suffixes: Iterable[str] | None = None, junk: list[Path] | None = None
) -> list[Entry]:
    """Every non-hidden entry under ``root`` that is not a folder, in sorted walk order (a
    folder's entries, then its sub-folders); only names ending in ``suffixes`` (any case)
    when given.

    Linked folders are followed; a real folder is read once, and a link that leads to a
    folder already read (a loop, or a second link) is an entry of status ``not_a_file``.
    Regular files and links to them have status None; every other entry says what it is
    (see :func:`entry_problem`). A link to a folder that holds ``root`` (``/``, a parent)
    or to a pseudo file system (``/proc``, ...) is not followed (``not_a_file``). Junk
    files (:func:`is_junk`) are left out, and appended to ``junk`` when it is given."""
    keep = None if suffixes is None else {s.lower() for s in suffixes}
    out: list[Entry] = []
    seen: set[tuple[int, int]] = set()
    real_root = Path(absolute(root))

    def visit(folder: Path) -> None:
        st = os.stat(folder)
        seen.add((st.st_dev, st.st_ino))
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            out.append(
                Entry(folder, "unreadable", f"cannot list the folder: {exc.strerror or exc}")
            )
            return
        subfolders = []
        for name in names:
            if is_junk(name):
                if junk is not None and not is_hidden(name):
                    junk.append(folder / name)
                continue
            p = folder / name
            problem = entry_problem(p)
            if problem is None and p.is_dir():
                st = os.stat(p)
                outside = _unwalkable_link(p, real_root)
                if outside:
                    out.append(Entry(p, "not_a_file", outside))
                elif (st.st_dev, st.st_ino) in seen:
                    out.append(
                        Entry(
                            p,
                            "not_a_file",
                            f"a link to the folder {display_path(absolute(p))}, "
                            "which is read already (a loop or a second link)",
                        )
                    )
                else:
                    subfolders.append(p)
                continue
            if _suffix_kept(name, keep):
                out.append(Entry(p, *(problem or (None, None))))
        for sub in subfolders:
            st = os.stat(sub)
            if (st.st_dev, st.st_ino) in seen:  # reached twice within this folder's links
                out.append(
                    Entry(
                        sub,
                        "not_a_file",
                        f"a link to the folder {display_path(absolute(sub))}, "
                        "which is read already (a loop or a second link)",
                    )
                )
                continue
            visit(sub)

    visit(root)
    return out


def _unwalkable_link(p: Path, real_root: Path) -> str | None:
    """Why the linked folder ``p`` is not walked (it holds the dataset, or is a pseudo
    file system), or None."""
    if not p.is_symlink():
        return None
    target = Path(absolute(p))
    if target == real_root or target in real_root.parents:
        return (
            f"a link to the folder {display_path(target)}, which holds the dataset itself: not followed "
            "(the walk would never end)"
        )
    for pseudo in PSEUDO_FILE_SYSTEMS:
        if target == Path(pseudo) or Path(pseudo) in target.parents:
            return f"a link to {display_path(target)}, a system folder: not followed"
    return None


def _suffix_kept(name: str, keep: set[str] | None) -> bool:
    return keep is None or Path(display_path(name)).suffix.lower() in keep


def walk_files(root: Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    """The paths of :func:`walk_entries` (every entry, readable or not: reading one that is
    not a regular file fails with a reason instead of blocking)."""
    return [e.path for e in walk_entries(root, suffixes)]


# ----------------------------------------------------------------------------- manifests


def read_manifest(manifest: Path) -> pd.DataFrame:
    """A CSV (every cell text, empty cells missing) or Parquet manifest as a table. A
    column name given twice is a :class:`CurateError` naming it (pandas would rename the
    second ``label`` to ``label.1`` and read the first)."""
    try:
        with open_regular(manifest) as f:  # a FIFO named *.csv would block the reader
            head = f.readline(1 << 20)
        if manifest.suffix.lower() == ".csv":
            columns = next(csv.reader([head.decode("utf-8-sig", "replace")]), [])
            table = pd.read_csv(manifest, dtype=str, keep_default_na=False, na_values=[""])
        else:
            table = pd.read_parquet(manifest)
            columns = [str(c) for c in table.columns]
    except Exception as exc:  # parser errors come in many types
        raise CurateError(
            f"cannot read manifest {manifest}: {exc}",
            hint="check that it is a valid CSV (with a header row) or Parquet file",
        ) from exc
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise CurateError(
            f"manifest {manifest} has the column {twice[0]!r} more than once "
            f"({', '.join(repr(c) for c in twice)}); curate cannot tell which one you mean",
            hint="rename or delete the extra column in the header row",
        )
    return table


def is_missing(v: object) -> bool:
    """The manifests' missing value: None, NaN or pandas' NA."""
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def is_missing_label(v: object) -> bool:
    """A missing label: a missing value (:func:`is_missing`), blank text, or one of the
    texts of :data:`MISSING_LABEL_TEXTS` (``NaN``, ``None``, ``NA``, ... any case)."""
    if is_missing(v):
        return True
    text = str(v).strip()
    return not text or text.lower() in MISSING_LABEL_TEXTS


def row_ref(manifest: Path, i: int) -> str:
    """Where row ``i`` (0-based, in table order) of a manifest is, as its user finds it:
    ``line N of x.csv`` (the header is line 1) or ``row i of x.parquet (counted from 0)``."""
    if manifest.suffix.lower() == ".csv":
        return f"line {i + 2} of {manifest.name}"
    return f"row {i} of {manifest.name} (counted from 0)"


def require_columns(table: pd.DataFrame, manifest: Path, options: Mapping[str, str]) -> None:
    """Raise a :class:`CurateError` naming the first column of ``options`` (column -> the
    option that names it) that ``table`` lacks, and the columns it has; a CSV read as one
    column whose name holds another delimiter (``;``, tab, ``|``) says so."""
    found = ", ".join(map(str, table.columns)) or "(none)"
    for col, option in options.items():
        if col not in table.columns:
            delim = _other_delimiter(table, manifest)
            if delim is not None:
                raise CurateError(
                    f"manifest {manifest} has one column {str(table.columns[0])!r}: its fields look separated "
                    f"by {delim!r}, and curate reads comma-separated CSV",
                    hint=f"save it with commas, e.g. python -c \"import pandas as pd; pd.read_csv('{manifest}', "
                    f"sep='{delim}', dtype=str).to_csv('fixed.csv', index=False)\"",
                )
            raise CurateError(
                f"manifest {manifest} has no column {col!r}; columns found: {found}",
                hint=f"name the right column with {option} COLUMN",
            )


def _other_delimiter(table: pd.DataFrame, manifest: Path) -> str | None:
    if manifest.suffix.lower() != ".csv" or len(table.columns) != 1:
        return None
    header = str(table.columns[0])
    for delim in (";", "\t", "|"):
        if delim in header:
            return "\\t" if delim == "\t" else delim
    return None


def manifest_paths(table: pd.DataFrame, column: str, manifest: Path) -> tuple[list[str], list[str]]:
    """The paths of a manifest column: (as written, stripped; resolved against the
    manifest's folder). A missing or blank path is ``""`` in both. A Parquet path stored
    as bytes is decoded as UTF-8; bytes that are not UTF-8 keep ``\\xNN`` escapes in the
    first list and are ``""`` in the second (see :func:`bad_path_rows`)."""
    rel = [_path_text(v) for v in table[column].tolist()]
    base = str(manifest.parent.resolve())
    return rel, resolve_paths(
        [
            os.path.join(base, p) if p and not _is_bad_text(v) else ""
            for p, v in zip(rel, table[column].tolist(), strict=True)
        ]
    )


def resolve_paths(paths: Iterable[str]) -> list[str]:
    """:func:`absolute` of each path (``""`` stays ``""``), resolving each folder once: a
    file's own name is followed only when it is a symbolic link (one ``lstat`` per file
    instead of one per path component: a million paths in seconds)."""
    folders: dict[str, str] = {}
    out = []
    for p in paths:
        if not p:
            out.append("")
            continue
        head, tail = os.path.split(p)
        if tail in ("", ".", "..") or not head:
            out.append(absolute(p))
            continue
        real = folders.get(head)
        if real is None:
            real = folders[head] = absolute(head)
        full = os.path.join(real, tail)
        out.append(absolute(p) if os.path.islink(full) else full)  # a link: the full rule
    return out


def bad_path_rows(table: pd.DataFrame, column: str) -> list[int]:
    """Rows whose path is bytes that are not UTF-8 (status ``bad_name``)."""
    return [i for i, v in enumerate(table[column].tolist()) if _is_bad_text(v)]


def _is_bad_text(v: object) -> bool:
    if isinstance(v, (bytes, bytearray)):
        try:
            bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    return isinstance(v, str) and has_bad_name(v)


def _path_text(v: object) -> str:
    if is_missing(v):
        return ""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "backslashreplace").strip()
    return display_path(str(v)).strip()


# ----------------------------------------------------------------------------- curate's folders


def read_run_json(folder: Path) -> dict[str, Any]:
    """A stage's ``run.json`` in ``folder`` (empty when there is none)."""
    path = folder / RUN_JSON_FILE
    if not os.path.lexists(path):
        return {}
    data = read_json_file(path, what="run record", hint="re-run the stage that wrote it")
    return data if isinstance(data, dict) else {}


def images_build_dir(source: Path, kind: str) -> Path | None:
    """The build-tuples folder whose ``images.parquet`` a source of ``kind`` stands for:
    itself for a ``build``, the build it screened for a ``screen`` (None when its
    ``run.json`` names none), None for every other kind."""
    if kind == "build":
        return source
    return screen_build_dir(source) if kind == "screen" else None


def screen_build_dir(folder: Path) -> Path | None:
    """The build-tuples folder a screen output folder was screened from, or None.

    Read from its ``run.json`` (``params.build_dir``, ``params.source`` or
    ``inputs.build_dir``, relative paths against ``folder``); the first that holds
    ``images.parquet``.
    """
    run = read_run_json(folder)
    params, inputs = run.get("params"), run.get("inputs")
    params = params if isinstance(params, dict) else {}
    inputs = inputs if isinstance(inputs, dict) else {}
    for cand in (params.get("build_dir"), params.get("source"), inputs.get("build_dir")):
        if not cand:
            continue
        p = Path(str(cand))
        p = p if p.is_absolute() else folder / p
        if (p / BUILD_IMAGES_FILE).is_file():
            return p.resolve()
    return None
