"""The one shape every screen has.

A screen looks at the images of a build (level ``image``: one verdict per image) or at
its tuples (level ``tuple``: one verdict per tuple) and returns, per row, a score, a
reject flag and a reason. It is a subclass of :class:`Screen` registered with
:func:`curate.screens.register`; :func:`curate.screen.screen` runs the registered
screens in order (image screens first), so adding a screen is one new module plus
its test. ``docs/screens.md`` has a worked example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from curate.errors import CurateError
from curate.plugins import (  # noqa: F401  (screens import them from here)
    Option,
    Plugin,
    check_choice,
    check_flag,
    check_number,
)

Level = Literal["image", "tuple"]
LEVELS: tuple[str, ...] = ("image", "tuple")
StageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Reason:
    """A reason code a screen writes into ``reason`` columns, and how the report shows it."""

    code: str  # machine-readable, e.g. ``side_face``; never contains ``;``
    label: str  # for people, e.g. ``side face``
    color: str  # ``#rrggbb``, used by every figure and chip of the report
    help: str  # one sentence: what it means and which option moves it


@dataclass
class ScreenContext:
    """What a screen sees: the images and tuples of the build, their embeddings, the
    resolved settings of every screen, and the outputs of the screens that ran before.

    ``images`` holds only the images that are in at least one tuple (rows of the
    build's ``images.parquet``); ``rows[role]`` gives, for every tuple, the row of that
    member in ``images``. ``embeddings`` (when the pipeline computed them) has one
    normalised row per image row. ``cache_dir`` is the shared cache root
    (:mod:`curate.cache`) a screen may keep expensive per-image work in, or None.
    ``shared`` is per-run scratch for work several screens need (decoded thumbnails).
    ``engine``, when set, runs per-image work elsewhere (:class:`curate.ray_engine.RayEngine`);
    None: this machine.
    """

    images: pd.DataFrame
    tuples: pd.DataFrame
    rows: dict[str, np.ndarray]
    settings: Mapping[str, Any]
    out_dir: Path
    embeddings: np.ndarray | None = None
    progress: StageProgress | None = None
    results: dict[str, ScreenOutput] = field(default_factory=dict)
    cache_dir: Path | None = None  # the shared cache (curate.cache); None: no cache
    # Per-run scratch the screens share, e.g. the hygiene screens' decoded thumbnails
    # (curate.hygiene.thumbnails, keyed by sha256); gone when the run ends.
    shared: dict[str, Any] = field(default_factory=dict)
    engine: Any = None

    def require_embeddings(self, screen: str) -> np.ndarray:
        """The embeddings, for a screen that declares ``needs_embeddings`` (the pipeline
        computes them then); a :class:`CurateError` naming ``screen`` when there are none."""
        if self.embeddings is None:
            raise CurateError(
                f"screen {screen!r} needs embeddings and none were computed",
                hint="pass --embeddings FILE or let curate screen embed the images",
            )
        return self.embeddings

    @property
    def labels(self) -> np.ndarray:
        """The label of every image row, as str."""
        return self.images["label"].astype(str).to_numpy()

    @property
    def roles(self) -> list[str]:
        """The member roles of the tuples (``negative2`` only for quadruplets)."""
        from curate.tuples import ROLES  # here, not at the top: curate.tuples loads pandas

        return [r for r in ROLES if r in self.rows]

    def n_rows(self, level: str) -> int:
        return len(self.images) if level == "image" else len(self.tuples)


@dataclass
class ScreenOutput:
    """The verdict of one screen, one entry per row of its level.

    ``score`` is the screen's continuous measure (larger is worse; NaN where it could
    not be measured), ``reject`` its verdict, ``reason`` None for a kept row or the
    ``;``-joined codes of its :attr:`Screen.reasons`.

    ``table`` holds further per-row columns worth keeping (the face screen's yaw and
    occlusion, the boundary's distances). A tuple screen may say, per member role,
    which members a rejection implicates (``blame``; default: all of them) and give
    per-image summaries for ``images_suspect.parquet`` (``image_columns``, rows aligned
    with the images). ``artifacts`` are JSON-ready results (the fitted boundary);
    ``artifacts["notes"]``, a list of sentences, is shown to the user after the run
    (what a screen did that the user should know, e.g. a cap that acted).
    """

    score: np.ndarray
    reject: np.ndarray
    reason: np.ndarray
    table: pd.DataFrame | None = None
    blame: dict[str, np.ndarray] | None = None
    image_columns: pd.DataFrame | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)

    def validate(self, screen: Screen, n_rows: int) -> None:
        """Raise when the output does not have the shape every screen promises."""
        where = f"screen {screen.name!r}"
        for name in ("score", "reject", "reason"):
            arr = getattr(self, name)
            if np.shape(arr) != (n_rows,):
                raise CurateError(
                    f"{where} returned {name} of shape {np.shape(arr)}, "
                    f"expected ({n_rows},) ({screen.level} rows)"
                )
        known = set(screen.codes)
        has_reason = np.array([isinstance(r, str) and r != "" for r in self.reason], dtype=bool)
        if not np.array_equal(has_reason, np.asarray(self.reject, dtype=bool)):
            raise CurateError(f"{where} gave a reason to a kept row or none to a rejected row")
        for r in set(self.reason[has_reason].tolist()):
            unknown = set(r.split(";")) - known
            if unknown:
                raise CurateError(
                    f"{where} wrote reason code(s) {sorted(unknown)} it does not register"
                )
        if self.table is not None and len(self.table) != n_rows:
            raise CurateError(
                f"{where} returned a table of {len(self.table)} rows, expected {n_rows}"
            )


class Screen(Plugin, ABC):
    """Base class of every screen. Subclasses set the class attributes and :meth:`run`
    (:class:`curate.plugins.Plugin`: the options and the report section every plug-in has)."""

    kind: ClassVar[str] = "screen"
    level: ClassVar[Level]
    reasons: ClassVar[tuple[Reason, ...]]
    summary: ClassVar[str]
    # Run order within the level (smaller first; ties: registration order). The built-in
    # image screens: faces 10, label 20, not_face 30, quality 40, near_duplicates 90 (last:
    # of a group of copies it keeps one the others passed); plug-ins default to 100.
    order: ClassVar[int] = 100
    column_prefix: ClassVar[str | None] = None  # default: the name
    needs_embeddings: ClassVar[bool] = False
    # The screen whose score orders images_suspect.parquet (the label screen); at most one.
    ranks_images: ClassVar[bool] = False
    # Columns of ``table`` carried into images_suspect.parquet (image screens).
    suspect_columns: ClassVar[tuple[str, ...]] = ()
    # Files this screen may write into the output folder (stale copies are removed
    # when it does not run).
    files: ClassVar[tuple[str, ...]] = ()
    # Whether the screen can be left out: then it has the option ``skip_<name>_screen``
    # (CLI ``--skip-<name>-screen``; :attr:`skip_option`), helped by ``skip_help``, and
    # earlier names of that option still accepted (``skip_aliases``, deprecated).
    skippable: ClassVar[bool] = True
    skip_help: ClassVar[str | None] = None  # default: "Do not run the <name> screen."
    skip_aliases: ClassVar[tuple[str, ...]] = ()
    # Progress stages the screen reports through ``ctx.progress`` and their labels.
    progress_stages: ClassVar[Mapping[str, str]] = {}

    @property
    def skip_option(self) -> Option | None:
        """The option that leaves this screen out, or None when it cannot be skipped."""
        if not self.skippable:
            return None
        name = f"skip_{self.name}_screen"
        return Option(
            name,
            False,
            self.skip_help or f"Do not run the {self.name.replace('_', ' ')} screen.",
            check_flag(name),
        )

    def all_options(self) -> tuple[Option, ...]:
        """:attr:`options` and, for a skippable screen, its skip option."""
        skip = self.skip_option
        return self.options + ((skip,) if skip is not None else ())

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @property
    def prefix(self) -> str:
        return self.column_prefix or self.name

    def columns(self) -> tuple[str, str, str]:
        """The names of this screen's score, reject and reason columns."""
        return f"{self.prefix}_score", f"{self.prefix}_reject", f"{self.prefix}_reason"

    def enabled(self, settings: Mapping[str, Any]) -> bool:
        """Whether the screen runs with these settings (default: unless its skip option is set)."""
        skip = self.skip_option
        return skip is None or not settings.get(skip.name, False)

    def report(self, run: Any, ctx: Any) -> list[Any] | None:
        """The body of this screen's section of the HTML report (blocks of
        :mod:`curate.report.html`), read from the screen folder ``run``
        (:class:`curate.report.inputs.ScreenRun`; ``ctx`` is a
        :class:`curate.report.sections.SectionContext`: thumbnails, gallery size, seed);
        None: no section. Default, when the screen ran: how many rows it rejected for each
        of its reasons (``images_suspect.parquet`` for image screens, ``scores.parquet``
        for tuple screens)."""
        from curate.report.sections import reason_counts

        return reason_counts(self, run)

    @abstractmethod
    def run(self, ctx: ScreenContext) -> ScreenOutput:
        """Judge every row of this screen's level."""

    def caption(self, row: Mapping[str, Any], code: str) -> list[str]:
        """Short facts about a rejected image for the report's gallery (image screens)."""
        return []

    def partner(self, row: Mapping[str, Any], code: str) -> Any:
        """The ``image_id`` the report's gallery shows next to a rejected image (a
        near-duplicate's kept copy), or None."""
        return None

    def outputs(
        self, out: ScreenOutput, ctx: ScreenContext
    ) -> dict[str, pd.DataFrame | dict[str, Any]]:
        """Files to write into the output folder (name -> table or JSON object)."""
        return {}


# ----------------------------------------------------------------------------- helpers
def join_codes(flags: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per row, the ``;``-joined codes whose flag is set (None where none is), in the given order."""
    if not flags:
        return np.empty(0, dtype=object)
    n = len(flags[0][1])
    bits = np.zeros(n, dtype=np.int64)
    for k, (_, hit) in enumerate(flags):
        bits |= np.asarray(hit, dtype=bool).astype(np.int64) << k
    table = {
        b: ";".join(code for k, (code, _) in enumerate(flags) if b >> k & 1) or None
        for b in np.unique(bits).tolist()
    }
    return np.array([table[b] for b in bits.tolist()], dtype=object)
