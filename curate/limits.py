"""Checks of the numbers a user gives (options and Python arguments) and the resources
they ask for, in one place, so every command answers a bad value with the same kind of
:class:`~curate.errors.CurateError` (what was wrong, and the fix) instead of a traceback
deep inside numpy or torch.

- :func:`whole_number` and :func:`real_number` check type and range: ``2.5`` is not a
  whole number (never truncated), ``True`` is not a number, NaN and infinity are not
  finite numbers, and ``None`` is refused where a value is needed.
- :func:`cap_workers` bounds a worker count by the CPUs and the items to do.
- :func:`check_memory` refuses a request whose estimated memory is beyond what the
  machine has, before it is allocated.
- :func:`one_blas_thread` runs a block's BLAS on one thread (small matrix products).
"""

from __future__ import annotations

import math
import os
from typing import Any

from curate.errors import CurateError, CurateWarning

MAX_SEED = 2**32 - 1  # numpy and torch seeds are unsigned 32-bit (and 64-bit) numbers


def whole_number(
    value: Any,
    option: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    hint: str | None = None,
) -> int:
    """``value`` as an ``int`` when it is a whole number in ``[lo, hi]``; a
    :class:`CurateError` naming ``option`` otherwise (``2.5``, ``"3"``, ``True`` and
    ``None`` included; ``3.0`` and numpy integers are accepted)."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if (
        not ok
        and hasattr(value, "dtype")
        and getattr(value.dtype, "kind", "") in "iu"
        and getattr(value, "ndim", 1) == 0
    ):
        value, ok = int(value), True
    if not ok and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value, ok = int(value), True
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise CurateError(
            f"{option} must be a whole number{_range(lo, hi)}, got {_shown(value)}",
            hint=hint
            or f"pass {option} {lo if lo is not None else 0}"
            + (f" or more (at most {hi:,})" if hi is not None else " or more"),
        )
    return int(value)


def real_number(
    value: Any,
    option: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    hint: str | None = None,
) -> float:
    """``value`` as a ``float`` when it is a finite number in the range (``lo_open`` /
    ``hi_open`` exclude the ends); a :class:`CurateError` naming ``option`` otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = not (
            (lo is not None and (v < lo or (lo_open and v == lo)))
            or (hi is not None and (v > hi or (hi_open and v == hi)))
        )
    if not ok:
        left = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        right = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        where = (
            f" in {left or '(-inf'}, {right or 'inf)'}" if lo is not None or hi is not None else ""
        )
        raise CurateError(
            f"{option} must be a finite number{where}, got {_shown(value)}",
            hint=hint or f"pass a value for {option}{where}",
        )
    return float(value)


def seed_value(value: Any, option: str = "--seed") -> int:
    """A seed: a whole number from 0 to 2**32 - 1 (``None`` is refused: a run must be
    reproducible, so its seed is always recorded)."""
    return whole_number(
        value,
        option,
        lo=0,
        hi=MAX_SEED,
        hint=f"pass {option} N with N from 0 to {MAX_SEED:,} (the same seed gives the same result)",
    )


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class CappedWarning(CurateWarning):
    """A requested resource (a worker count) was lowered to what the machine or the work allows."""


def workers_for(requested: Any, n_items: int, option: str = "--workers") -> int:
    """:func:`cap_workers` for a library call: the count, with a :class:`CappedWarning`
    when it was capped; None stays None (the caller's default)."""
    if requested is None:
        return None  # type: ignore[return-value]
    n, note = cap_workers(requested, n_items, option)
    if note:
        import warnings

        warnings.warn(note, CappedWarning, stacklevel=3)
    return n


def cap_workers(requested: Any, n_items: int, option: str = "--workers") -> tuple[int, str | None]:
    """``(workers, note)``: ``requested`` (0 or more; a negative or fractional count is a
    :class:`CurateError`) capped at the CPU count and at ``n_items``, with a note when
    it was capped."""
    n = whole_number(
        requested,
        option,
        lo=0,
        hint=f"pass {option} N with N from 0 to the number of CPUs "
        f"({cpu_count()}); 0 runs in this process",
    )
    cap = max(1, min(cpu_count(), n_items))
    if n > cap:
        why = f"{cpu_count()} CPU(s)" if cap == cpu_count() else f"{n_items:,} item(s) to do"
        return cap, f"{option} {n} capped at {cap} ({why})"
    return n, None


def one_blas_thread():
    """A context in which NumPy's and SciPy's BLAS run on one thread (``threadpoolctl``).

    For many small products (a 256-px image area-resampled to 48 px is two products of a
    few million operations), and small eigen-decompositions, threads cost more in hand-offs
    than they gain, and on a busy machine many times more: on taiwanese-posed's 256-px
    portraits, with other jobs on the two cores, a thumbnail took 90 ms with OpenBLAS's
    threads and 0.4 ms on one (measured while profiling
    ``bench/quality/quality_real_photos.py --sets speed``). Only BLAS libraries already
    loaded are limited; torch's own threads are not touched. The results are the
    same: the products split their outputs, not their sums, across threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def available_memory() -> int:
    """Bytes of memory this machine has available now (``MemAvailable``), else its total."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def check_memory(nbytes: float, what: str, *, hint: str, share: float = 0.8) -> None:
    """A :class:`CurateError` when ``nbytes`` (an estimate of what ``what`` needs) is more
    than ``share`` of the memory available, before anything is allocated."""
    have = available_memory()
    if nbytes > share * have:
        raise CurateError(
            f"{what} would need about {_gib(nbytes)} of memory; this machine has "
            f"{_gib(have)} available",
            hint=hint,
        )


ACTIVATIONS_PER_VALUE = (
    16  # float32 activations per input value of a CNN batch (a rough lower bound)
)


def check_batch_memory(images: int, input_size: Any, what: str, *, hint: str) -> None:
    """:func:`check_memory` for a batch of ``images`` network inputs of ``input_size``
    (``[channels, height, width]``, or one side for 3-channel squares)."""
    shape = (
        [3, int(input_size), int(input_size)]
        if isinstance(input_size, int)
        else [int(v) for v in input_size]
    )
    values = images * math.prod(shape)
    check_memory(values * 4 * ACTIVATIONS_PER_VALUE, what, hint=hint)


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def _range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:,} to {hi:,}"
    if lo is not None:
        return f" of at least {lo:,}"
    if hi is not None:
        return f" of at most {hi:,}"
    return ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
