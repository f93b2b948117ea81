"""Colours of the report: every reason's colour and label come from the screen registry
(:mod:`curate.screens`); this module adds the colours of distance pairs and nulls."""

from __future__ import annotations

from curate import screens

KEPT = "kept"
KEPT_COLOR = "#2ca02c"  # green

# Colours for reason codes no registered screen knows (assigned by a stable hash).
_EXTRA_COLORS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939")

# Distance pairs in the boundary figure.
PAIR_COLORS: dict[str, str] = {
    "d_ap": "#d62728",  # anchor-positive: compared with T_pos
    "d_an": "#1f77b4",  # anchor-negative: compared with T_neg
    "d_an2": "#17becf",
    "d_nn2": "#9edae5",
}

NULL_COLORS: dict[str, str] = {
    "theory": "#7f7f7f",
    "effective": "#000000",
    "empirical": "#e377c2",
}


def reason_colors() -> dict[str, str]:
    """Colour of every registered reason code, and of ``kept``."""
    return {**{r.code: r.color for r in screens.reasons()}, KEPT: KEPT_COLOR}


def reason_color(code: str) -> str:
    """The colour of a reason code; unknown codes get a stable colour from a fixed list."""
    if code == KEPT:
        return KEPT_COLOR
    r = screens.reason(code)
    if r is not None:
        return r.color
    return _EXTRA_COLORS[sum(code.encode()) % len(_EXTRA_COLORS)]


def reason_label(code: str) -> str:
    """The human label of a reason code (the code itself when no screen registers it)."""
    r = screens.reason(code)
    return r.label if r is not None else code


def order_reasons(codes: set[str] | list[str]) -> list[str]:
    """Registered codes in registry order (:func:`curate.screens.reasons`), then unknown
    codes alphabetically."""
    order = [r.code for r in screens.reasons()]
    known = [c for c in order if c in codes]
    return known + sorted(c for c in set(codes) if c not in order)


def reason_help(code: str) -> str:
    """The registered one-line explanation of a reason code ('' when unknown)."""
    if code == KEPT:
        return "no screen rejected it"
    r = screens.reason(code)
    return r.help if r is not None else ""
