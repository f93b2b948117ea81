"""Matplotlib figures of the report, rendered headless (Agg) to inline SVG data URIs.

Figures are embedded with ``<img src="data:image/svg+xml;base64,...">``: an SVG
loaded as an image can run no script, whatever text the data put into it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import norm  # noqa: E402

from curate.report.palette import NULL_COLORS, PAIR_COLORS, reason_color  # noqa: E402
from curate.screens.faces import OCCLUDED, SIDE_FACE  # noqa: E402
from curate.stats.statistical import NEGATIVE_TOO_CLOSE, POSITIVE_TOO_FAR  # noqa: E402

PAIR_NAMES = {
    "d_ap": "anchor-positive",
    "d_an": "anchor-negative",
    "d_an2": "anchor-negative2",
    "d_nn2": "negative-negative2",
}
_RC: Any = {  # matplotlib rcParams (its stubs want literal keys)
    "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
    "svg.hashsalt": "curate-report",  # deterministic element ids
    "text.parse_math": False,  # a label with '$' is text, not mathtext
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
}
N_BINS = 80


@contextmanager
def _figure(
    width: float = 9.0, height: float = 3.4, ncols: int = 1
) -> Iterator[tuple[Figure, Any]]:
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), layout="constrained")
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def to_data_uri(fig: Figure) -> str:
    """The figure as a base64 SVG data URI, byte-for-byte deterministic."""
    buf = io.BytesIO()
    with plt.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _range(arrays: Sequence[np.ndarray], extra: Sequence[Any]) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays if a.size]
    finite = [a for a in finite if a.size]
    lo_hi = [float(x) for x in extra if x is not None and np.isfinite(x)]
    if finite:
        allv = np.concatenate(finite)
        lo_hi += [float(np.quantile(allv, 0.001)), float(np.quantile(allv, 0.999))]
    if not lo_hi:
        return 0.0, 2.0
    lo, hi = min(lo_hi), max(lo_hi)
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _threshold_lines(ax: Any, boundary: Mapping[str, Any]) -> None:
    for key, code, name in (
        ("t_pos", POSITIVE_TOO_FAR, "T_pos"),
        ("t_neg", NEGATIVE_TOO_CLOSE, "T_neg"),
    ):
        value = boundary.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            ax.axvline(
                value, color=reason_color(code), ls="--", lw=1.6, label=f"{name} = {value:.3f}"
            )


def _normal_curve(
    ax: Any, x: np.ndarray, fit: Mapping[str, Any] | None, label: str, color: str, lw: float = 1.8
) -> None:
    if not fit:
        return
    mu, sigma = fit.get("mu"), fit.get("sigma")
    if not isinstance(mu, (int, float)) or not isinstance(sigma, (int, float)) or sigma <= 0:
        return
    d_null = fit.get("d_null")
    dn = f", d_null={d_null:.3g}" if isinstance(d_null, (int, float)) else ""
    ax.plot(
        x,
        norm.pdf(x, mu, sigma),
        color=color,
        lw=lw,
        label=f"{label} null (mu={mu:.3f}, sigma={sigma:.3f}{dn})",
    )


def boundary_figure(scores: pd.DataFrame, boundary: Mapping[str, Any] | None) -> str:
    """Histograms of every pair distance with the fitted null and T_pos / T_neg."""
    cols = [c for c in ("d_ap", "d_an", "d_an2", "d_nn2") if c in scores.columns]
    data = {c: scores[c].to_numpy(dtype=float) for c in cols}
    b = boundary or {}
    lo, hi = _range(list(data.values()), [b.get("t_pos"), b.get("t_neg")])
    edges = np.linspace(lo, hi, N_BINS + 1)
    with _figure() as (fig, ax):
        for c, values in data.items():
            v = values[np.isfinite(values)]
            if not v.size:
                continue
            dens, _ = np.histogram(v, bins=edges, density=True)
            ax.stairs(
                dens,
                edges,
                fill=c in ("d_ap", "d_an"),
                alpha=0.35 if c in ("d_ap", "d_an") else 1.0,
                color=PAIR_COLORS[c],
                label=f"{PAIR_NAMES[c]} (n={v.size:,})",
            )
        x = np.linspace(lo, hi, 400)
        used = str(b.get("null", "")) if b else ""
        fit = {k: b.get(k) for k in ("mu", "sigma", "d_null")} if b else None
        _normal_curve(ax, x, fit, f"fitted {used}".strip(), NULL_COLORS.get(used, "#000000"))
        _threshold_lines(ax, b)
        ax.set_xlabel("Euclidean distance of normalised embeddings")
        ax.set_ylabel("density")
        ax.set_title("Tuple distances against the boundary")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        return to_data_uri(fig)


def z_figure(scores: pd.DataFrame, boundary: Mapping[str, Any]) -> str | None:
    """Histograms of the standardised distances toward rejection (each pair against its own
    class or class-pair null), with the standard normal and the two cut-offs z(1 - alpha)."""
    if not {"z_ap", "z_neg"} <= set(scores.columns):
        return None
    data = {
        "z_ap": scores["z_ap"].to_numpy(dtype=float),
        "z_neg": scores["z_neg"].to_numpy(dtype=float),
    }
    names = {
        "z_ap": "anchor-positive: (d - mu_aa) / sigma_aa",
        "z_neg": "closest negative pair: (mu_ab - d) / sigma_ab",
    }
    colors = {"z_ap": PAIR_COLORS["d_ap"], "z_neg": PAIR_COLORS["d_an"]}
    cuts = []
    for key, code, alpha in (
        ("z_ap", POSITIVE_TOO_FAR, boundary.get("alpha_pos")),
        ("z_neg", NEGATIVE_TOO_CLOSE, boundary.get("alpha_neg")),
    ):
        if isinstance(alpha, (int, float)) and 0 < alpha < 1:
            cuts.append((key, code, float(norm.isf(alpha)), alpha))
    lo, hi = _range(list(data.values()), [c[2] for c in cuts])
    edges = np.linspace(lo, hi, N_BINS + 1)
    with _figure() as (fig, ax):
        for key, v in data.items():
            v = v[np.isfinite(v)]
            if v.size:
                dens, _ = np.histogram(v, bins=edges, density=True)
                ax.stairs(
                    dens,
                    edges,
                    fill=True,
                    alpha=0.35,
                    color=colors[key],
                    label=f"{names[key]} (n={v.size:,})",
                )
        x = np.linspace(lo, hi, 400)
        ax.plot(x, norm.pdf(x), color="#000000", lw=1.4, label="standard normal (the null)")
        for _key, code, z, alpha in cuts:
            ax.axvline(
                z,
                color=reason_color(code),
                ls="--",
                lw=1.6,
                label=f"{code}: z > {z:.2f} (alpha {alpha:g})",
            )
        ax.set_xlabel("standardised distance toward rejection")
        ax.set_ylabel("density")
        ax.set_title("Tuple pairs against their class-aware nulls")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        return to_data_uri(fig)


def null_fit_figure(boundary: Mapping[str, Any]) -> str | None:
    """Random different-label pair distances with the theory, effective and empirical nulls."""
    sample = np.asarray(
        [v for v in boundary.get("random_pair_distances") or [] if isinstance(v, (int, float))],
        dtype=float,
    )
    nulls = boundary.get("nulls") or {}
    if not sample.size and not nulls:
        return None
    centres = [n.get("mu") for n in nulls.values() if isinstance(n, dict)]
    lo, hi = _range([sample], [boundary.get("t_pos"), boundary.get("t_neg"), *centres])
    x = np.linspace(lo, hi, 400)
    with _figure() as (fig, ax):
        if sample.size:
            dens, edges = np.histogram(sample, bins=np.linspace(lo, hi, 60), density=True)
            ax.stairs(
                dens,
                edges,
                fill=True,
                color="#c7c7c7",
                label=f"random different-label pairs (n={sample.size:,})",
            )
        for name in ("theory", "effective", "empirical"):
            fit = nulls.get(name)
            if isinstance(fit, dict):
                used = name == boundary.get("null")
                _normal_curve(
                    ax,
                    x,
                    fit,
                    name + (" (used)" if used else ""),
                    NULL_COLORS[name],
                    lw=2.4 if used else 1.4,
                )
        _threshold_lines(ax, boundary)
        if sample.size:  # the theory null can be a spike that hides the rest
            ax.set_ylim(0, max(float(dens.max()) * 1.6, 1e-9))
        ax.set_xlabel("distance")
        ax.set_ylabel("density")
        ax.set_title("Which null fits the random pairs?")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        return to_data_uri(fig)


def reason_bar_figure(by_reason: pd.DataFrame) -> str:
    """Horizontal bars: tuples per reason, in the reason colours."""
    with _figure(height=0.5 + 0.4 * max(len(by_reason), 1)) as (fig, ax):
        y = np.arange(len(by_reason))[::-1]
        ax.barh(y, by_reason["tuples"], color=[reason_color(r) for r in by_reason["reason"]])
        ax.set_yticks(y, list(by_reason["reason"]))
        for yi, n, s in zip(y, by_reason["tuples"], by_reason["share"], strict=True):
            ax.text(n, yi, f" {n:,} ({s:.1%})", va="center", fontsize=9)
        ax.set_xlabel("tuples")
        ax.margins(x=0.2)
        return to_data_uri(fig)


def class_bar_figure(by_class: pd.DataFrame, codes: Sequence[str]) -> str:
    """Stacked bars per anchor label: share of the label's tuples rejected per reason."""
    labels = [str(x) for x in by_class.index]
    with _figure(height=0.8 + 0.32 * max(len(labels), 1)) as (fig, ax):
        y = np.arange(len(labels))[::-1]
        left = np.zeros(len(labels))
        for code in codes:
            share = (by_class[code] / by_class["tuples"]).to_numpy(dtype=float)
            ax.barh(y, share, left=left, color=reason_color(code), label=code)
            left += share
        ax.set_yticks(y, labels)
        ax.set_xlabel("share of the label's tuples (a tuple with two reasons counts twice)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        return to_data_uri(fig)


def sensitivity_figure(
    alphas: np.ndarray,
    along_pos: np.ndarray,
    along_neg: np.ndarray,
    nominal: tuple[float | None, float | None],
) -> str:
    """Kept share when one alpha moves and the other stays at the run's value."""
    with _figure(height=3.2) as (fig, ax):
        ax.plot(
            alphas,
            along_pos,
            marker="o",
            color=reason_color(POSITIVE_TOO_FAR),
            label=f"vary alpha_pos (alpha_neg = {nominal[1]})",
        )
        ax.plot(
            alphas,
            along_neg,
            marker="s",
            color=reason_color(NEGATIVE_TOO_CLOSE),
            label=f"vary alpha_neg (alpha_pos = {nominal[0]})",
        )
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])  # plain text: mathtext is off
        ax.set_xlabel("alpha")
        ax.set_ylabel("tuples kept")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        for a in {x for x in nominal if x}:
            ax.axvline(a, color="#999999", lw=1, ls=":")
        ax.legend(fontsize=8, frameon=False)
        return to_data_uri(fig)


def faces_figure(faces: pd.DataFrame, max_yaw: float | None, max_occlusion: float | None) -> str:
    """Yaw and occlusion histograms with the screen's thresholds."""
    with _figure(ncols=2, height=3.0) as (fig, (ax_yaw, ax_occ)):
        yaw = (
            pd.to_numeric(faces.get("yaw"), errors="coerce").to_numpy(dtype=float)
            if "yaw" in faces
            else np.array([])
        )
        yaw = yaw[np.isfinite(yaw)]
        ax_yaw.stairs(*np.histogram(yaw, bins=np.linspace(-90, 90, 61)), fill=True, color="#8fa8c8")
        if max_yaw is not None:
            for s in (-1, 1):
                ax_yaw.axvline(
                    s * max_yaw,
                    color=reason_color(SIDE_FACE),
                    ls="--",
                    lw=1.6,
                    label=f"|yaw| = {max_yaw:g} ({SIDE_FACE})" if s > 0 else None,
                )
            ax_yaw.legend(fontsize=8, frameon=False)
        ax_yaw.set_xlabel("yaw (degrees)")
        ax_yaw.set_ylabel("images")
        ax_yaw.set_title(f"Yaw of {yaw.size:,} faces (found, or detected without landmarks)")
        occ = (
            pd.to_numeric(faces.get("occlusion"), errors="coerce").to_numpy(dtype=float)
            if "occlusion" in faces
            else np.array([])
        )
        occ = occ[np.isfinite(occ)]
        ax_occ.stairs(*np.histogram(occ, bins=np.linspace(0, 1, 51)), fill=True, color="#b9a3d0")
        if max_occlusion is not None:
            ax_occ.axvline(
                max_occlusion,
                color=reason_color(OCCLUDED),
                ls="--",
                lw=1.6,
                label=f"occlusion = {max_occlusion:g} ({OCCLUDED})",
            )
            ax_occ.legend(fontsize=8, frameon=False)
        ax_occ.set_xlabel("occlusion score (0 clear .. 1 covered)")
        ax_occ.set_title(f"Occlusion of {occ.size:,} faces")
        return to_data_uri(fig)
