"""One colour per rejection reason and per distance pair, shared by figures and HTML."""

from __future__ import annotations

# Reason codes in the order the report lists them; the screen writes these codes.
REASON_ORDER: tuple[str, ...] = (
    "positive_too_far",
    "negative_too_close",
    "side_face",
    "occluded",
    "no_face",
)

REASON_COLORS: dict[str, str] = {
    "positive_too_far": "#d62728",  # red
    "negative_too_close": "#1f77b4",  # blue
    "side_face": "#ff7f0e",  # orange
    "occluded": "#9467bd",  # purple
    "no_face": "#7f7f7f",  # grey
    "kept": "#2ca02c",  # green
}

# Colours for reason codes the palette does not know (assigned in sorted order).
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


def reason_color(code: str) -> str:
    """The colour of a reason code; unknown codes get a stable colour from a fixed list."""
    if code in REASON_COLORS:
        return REASON_COLORS[code]
    return _EXTRA_COLORS[sum(code.encode()) % len(_EXTRA_COLORS)]


def order_reasons(codes: set[str] | list[str]) -> list[str]:
    """Known codes in :data:`REASON_ORDER`, then unknown codes alphabetically."""
    known = [c for c in REASON_ORDER if c in codes]
    return known + sorted(c for c in set(codes) if c not in REASON_ORDER)
