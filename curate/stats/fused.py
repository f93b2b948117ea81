"""Fused gather-and-distance kernels for :func:`curate.stats.statistical.tuple_distances`.

One pass over the tuples: for each tuple the member rows are read straight from the
embedding matrix and every distance of the tuple is accumulated in one loop over the
dimensions, so no gathered copy of the rows is ever written. The kernels are compiled
by numba (the optional extra ``curate[fast]``; compiled once per machine and cached),
run without the GIL, so the boundary's thread pool gets real parallelism, and
accumulate in the embedding's dtype (float32 for the screen).

Distances are ``sqrt(sum_k (a_k - b_k)^2)``: exactly 0 for the same row, and without
the cancellation of the ``|a|^2 + |b|^2 - 2 a.b`` form near 0. The numpy path of
``tuple_distances`` uses that form; the two agree within float32 rounding.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from typing import Any

import numpy as np

from curate.errors import CurateError

# Below this many tuples the numpy path is used: the fused kernel would save
# milliseconds, and importing numba costs about a second.
MIN_TUPLES = 100_000
INSTALL_HINT = "pip install 'curate[fast]' (numba), or pass kernel='numpy'"


def available() -> bool:
    """Whether numba is installed, so the fused kernels can run."""
    return importlib.util.find_spec("numba") is not None


@cache
def _kernels() -> tuple[Any, Any]:
    if not available():
        raise CurateError(
            "the fused boundary kernel needs numba, which is not installed", hint=INSTALL_HINT
        )
    import numba

    # reassoc lets LLVM vectorise the sums; NaN and infinity keep their IEEE meaning
    jit = numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})

    @jit
    def triplet(e, a, p, n, zero, d_ap, d_an):  # pragma: no cover - compiled
        dim = e.shape[1]
        for t in range(a.shape[0]):
            i, j, m = a[t], p[t], n[t]
            s_ap = zero
            s_an = zero
            for k in range(dim):
                x = e[i, k]
                y = x - e[j, k]
                z = x - e[m, k]
                s_ap += y * y
                s_an += z * z
            d_ap[t] = math.sqrt(s_ap)
            d_an[t] = math.sqrt(s_an)

    @jit
    def quadruplet(e, a, p, n, n2, zero, d_ap, d_an, d_an2, d_nn2):  # pragma: no cover - compiled
        dim = e.shape[1]
        for t in range(a.shape[0]):
            i, j, m, q = a[t], p[t], n[t], n2[t]
            s_ap = zero
            s_an = zero
            s_an2 = zero
            s_nn2 = zero
            for k in range(dim):
                x = e[i, k]
                w = e[m, k]
                v = e[q, k]
                y = x - e[j, k]
                z = x - w
                u = x - v
                r = w - v
                s_ap += y * y
                s_an += z * z
                s_an2 += u * u
                s_nn2 += r * r
            d_ap[t] = math.sqrt(s_ap)
            d_an[t] = math.sqrt(s_an)
            d_an2[t] = math.sqrt(s_an2)
            d_nn2[t] = math.sqrt(s_nn2)

    return triplet, quadruplet


def fused_chunk(
    e: np.ndarray, cols: dict[str, np.ndarray], out: dict[str, np.ndarray], sl: slice
) -> None:
    """Fill ``out[name][sl]`` (``d_ap``, ``d_an`` and, for quadruplets, ``d_an2``, ``d_nn2``)
    from the rows ``cols[role][sl]`` of ``e`` (C-contiguous float32 or float64)."""
    triplet, quadruplet = _kernels()
    zero = e.dtype.type(0)
    a, p, n = cols["anchor"][sl], cols["positive"][sl], cols["negative"][sl]
    if "negative2" in cols:
        quadruplet(
            e,
            a,
            p,
            n,
            cols["negative2"][sl],
            zero,
            out["d_ap"][sl],
            out["d_an"][sl],
            out["d_an2"][sl],
            out["d_nn2"][sl],
        )
    else:
        triplet(e, a, p, n, zero, out["d_ap"][sl], out["d_an"][sl])
