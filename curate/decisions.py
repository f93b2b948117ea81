"""A curator's review decisions: ``decisions.csv``, read and checked against a screen run.

The review view of ``curate report`` downloads ``decisions.csv``, one row per image the
curator decided on (columns :data:`COLUMNS`, documented in docs/tables.md):

- ``image_id``: the image (``images_suspect.parquet`` of the screen); may be empty when
  ``path`` names the image;
- ``path``: its path as the screen recorded it (``path`` or ``rel_path``); checked
  against the id when both are given;
- ``decision``: ``keep`` (export it whatever the screens said), ``drop`` (leave it out)
  or ``relabel`` (export it under ``label``); an empty decision is no decision;
- ``label``: the new class, for ``relabel`` only (any class of the data);
- ``verdict`` and ``suspicion``: what the screen said, for the record (not read).

:func:`read_decisions` checks every row once, where the file enters: unknown ids or
paths, unknown labels, bad decision values and two rows that disagree about one image are
a :class:`~curate.errors.CurateError` naming the line and the fix. ``curate export
--decisions`` applies the result and ``curate report --decisions`` shows it.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from curate.errors import CurateError
from curate.io import file_sha256

COLUMNS = ("image_id", "path", "decision", "label", "verdict", "suspicion")
DECISIONS = ("keep", "drop", "relabel")
MAX_BYTES = 256 * 2**20  # a decisions file of a million images is ~100 MB
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HINT = "download decisions.csv from this screen run's report (curate report SCREEN_DIR), or fix that line"


@dataclass
class Decisions:
    """The checked decisions of one file: one row per decided image."""

    table: pd.DataFrame  # image_id (int64), decision, label (the new label for relabel, else "")
    source: str  # the file, as given
    sha256: str  # of the file's bytes
    n_undecided: int = 0  # rows with an empty decision
    notes: list[str] = field(default_factory=list)

    def ids(self, decision: str) -> set[int]:
        """The image ids with this decision."""
        return set(self.table.loc[self.table["decision"] == decision, "image_id"].tolist())

    @property
    def counts(self) -> dict[str, int]:
        """Rows per decision, and ``undecided`` (what ``run.json`` records)."""
        vc = self.table["decision"].value_counts()
        return {**{d: int(vc.get(d, 0)) for d in DECISIONS}, "undecided": self.n_undecided}

    def relabels(self) -> dict[int, str]:
        r = self.table[self.table["decision"] == "relabel"]
        return dict(zip(r["image_id"].tolist(), r["label"].tolist(), strict=True))


def _unquote(value: str) -> str:
    """A cell the report (or :func:`curate.export.csv_safe`) wrote as ``'=...`` back as ``=...``."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise CurateError(
            f"decisions file not found: {path}"
            if not os.path.lexists(path)
            else f"decisions file {path} is not a regular file",
            hint="pass the decisions.csv the report downloaded (--decisions FILE)",
        )
    if path.stat().st_size > MAX_BYTES:
        raise CurateError(
            f"decisions file {path} is larger than {MAX_BYTES // 2**20} MiB",
            hint="a decisions file has one short row per reviewed image; check the file",
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CurateError(
            f"decisions file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="save it as CSV UTF-8",
        ) from exc
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise CurateError(f"decisions file {path} is not a CSV file: {exc}", hint=_HINT) from exc
    if not rows:
        raise CurateError(f"decisions file {path} is empty", hint=_HINT)
    return [h.strip() for h in rows[0]], rows[1:]


def read_decisions(
    path: str | os.PathLike[str], images: pd.DataFrame, classes: list[str] | None = None
) -> Decisions:
    """Read and check ``decisions.csv`` against ``images`` (``images_suspect.parquet``:
    ``image_id``, ``path``, ``rel_path``, ``label``).

    ``classes`` are the labels a relabel may name (default: every ``label`` and
    ``suggested_label`` of ``images``). A ``relabel`` to the image's own label is a
    ``keep``; identical repeated rows count once. Raises :class:`CurateError` naming the
    line (1 is the header) for anything else that does not fit.
    """
    p = Path(path).expanduser()
    header, rows = _read_rows(p)
    where = {name: header.index(name) for name in COLUMNS if name in header}
    if "decision" not in where or not ({"image_id", "path"} & set(where)):
        raise CurateError(
            f"decisions file {p} needs the columns decision and image_id (or path); "
            f"it has {', '.join(header) or 'none'}",
            hint=f"the columns are {', '.join(COLUMNS)} (docs/tables.md)",
        )
    known = images.drop_duplicates("image_id").set_index("image_id", drop=False)
    own_label = {int(k): str(v) for k, v in known["label"].items()} if "label" in known else {}
    paths, by_path = _image_paths(known)
    if classes is None:
        classes = _known_classes(known)
    class_set = frozenset(classes)

    def cell(row: list[str], name: str) -> str:
        i = where.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    seen: dict[int, tuple[int, str, str]] = {}
    undecided = 0
    for line, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        raw_id, raw_path = cell(row, "image_id"), cell(row, "path")
        raw_path = raw_path if not raw_path or raw_path in by_path else _unquote(raw_path)
        image_id = _image_id(p, line, raw_id, raw_path, paths, by_path)
        decision = cell(row, "decision")
        label = cell(row, "label")
        decision, label = _check_decision(
            f"{p} line {line} (image {image_id})",
            decision,
            label,
            (classes, class_set),
            own_label.get(image_id),
        )
        if not decision:
            undecided += 1
            continue
        if image_id in seen and seen[image_id][1:] != (decision, label):
            first, d0, l0 = seen[image_id]
            raise CurateError(
                f"{p} lines {first} and {line} disagree about image {image_id}: "
                f"{d0}{' ' + l0 if l0 else ''} vs {decision}{' ' + label if label else ''}",
                hint="keep one row per image",
            )
        seen.setdefault(image_id, (line, decision, label))
    table = pd.DataFrame(
        {
            "image_id": pd.Series(list(seen), dtype="int64"),
            "decision": [v[1] for v in seen.values()],
            "label": [v[2] for v in seen.values()],
        }
    )
    return Decisions(
        table=table.sort_values("image_id", kind="stable").reset_index(drop=True),
        source=str(p),
        sha256=file_sha256(p),
        n_undecided=undecided,
    )


def _check_decision(
    at: str,
    decision: str,
    label: str,
    known: tuple[list[str], frozenset[str]],
    own_label: str | None,
) -> tuple[str, str]:
    """Check one row's decision and label (``at`` names the row; ``known``: the classes a
    relabel may name, and the same as a set); a relabel to the image's own label becomes a
    keep, and rows other than relabel carry no label."""
    classes, class_set = known
    written, decision = decision, decision.lower()
    if decision not in (*DECISIONS, ""):
        raise CurateError(
            f"{at}: decision {written!r} is not {', '.join(DECISIONS)} or empty",
            hint="write keep, drop or relabel in that row",
        )
    if label and label not in class_set and _unquote(label) in class_set:
        label = _unquote(label)
    if decision == "relabel":
        if not label:
            raise CurateError(
                f"{at}: relabel without a label",
                hint="write the new class in the label column",
            )
        if label not in class_set:
            shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
            raise CurateError(
                f"{at}: label {label!r} is not a class of this data ({shown})",
                hint="relabel to one of those classes",
            )
        if label == own_label:
            return "keep", ""
        return decision, label
    if label and label != own_label:
        raise CurateError(
            f"{at}: a label ({label!r}) on a {decision or 'undecided'} row; only relabel rows "
            "take a new label",
            hint="make the decision relabel, or empty the label column",
        )
    return decision, ""


def _image_paths(known: pd.DataFrame) -> tuple[dict[int, set[str]], dict[str, int]]:
    """Each image's names (``path`` and ``rel_path``) and, for each name, its first image."""
    paths = {
        int(k): {str(v) for v in vals if isinstance(v, str)}
        for k, *vals in zip(
            known.index,
            known["path"],
            known["rel_path"] if "rel_path" in known else known["path"],
            strict=True,
        )
    }
    by_path: dict[str, int] = {}
    for k, names in paths.items():
        for name in names:
            by_path.setdefault(name, k)
    return paths, by_path


def _known_classes(known: pd.DataFrame) -> list[str]:
    """Every ``label`` and ``suggested_label`` of the images, sorted."""
    labels = [
        *known.get("label", pd.Series(dtype=object)).dropna().astype(str),
        *known.get("suggested_label", pd.Series(dtype=object)).dropna().astype(str),
    ]
    return sorted(set(labels))


def _image_id(
    p: Path,
    line: int,
    raw_id: str,
    raw_path: str,
    paths: dict[int, set[str]],
    by_path: dict[str, int],
) -> int:
    """The image a row names, checked: its id, its path, or both agreeing."""
    if not raw_id:
        if not raw_path:
            raise CurateError(
                f"{p} line {line}: neither image_id nor path is given",
                hint="fill in the image_id of that row",
            )
        if raw_path not in by_path:
            raise CurateError(
                f"{p} line {line}: path {raw_path!r} is not an image of this screen run", hint=_HINT
            )
        return by_path[raw_path]
    try:
        number = float(raw_id)
        if not number.is_integer():
            raise ValueError(raw_id)
        image_id = int(number)
    except ValueError:
        raise CurateError(
            f"{p} line {line}: image_id {raw_id!r} is not a whole number",
            hint="write the image_id the report shows",
        ) from None
    if image_id not in paths:
        raise CurateError(
            f"{p} line {line}: image_id {image_id} is not an image of this screen run "
            "(images_suspect.parquet)",
            hint=_HINT,
        )
    if raw_path and raw_path not in paths[image_id]:
        shown = sorted(paths[image_id])[0] if paths[image_id] else "no path"
        raise CurateError(
            f"{p} line {line}: image_id {image_id} is {shown!r} in this screen run, the "
            f"decisions file says {raw_path!r}",
            hint=_HINT,
        )
    return image_id
