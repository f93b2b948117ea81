"""The training run's state and its checkpoints: :class:`TrainState` (the step, the
metrics rows, the per-tuple drops, the images' suspicion, the mined triplets, the
class-pair margins), written to ``<run>/checkpoints`` with the sha256 of every file and
checked before a run resumes from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from curate.errors import CurateError
from curate.io import (
    atomic_path,
    file_sha256,
    read_json_file,
    read_parquet,
    write_json,
    write_parquet,
)
from curate.runs import load_weights_file, save_weights, torch_load
from curate.train.loss import InLoopScreen
from curate.train.margins import PairMargins

CKPT_DIR = "checkpoints"
CKPT_FORMAT = 2  # 2: last.json holds the sha256 of every checkpoint file (format 1 had none)
# columns of a mined-triplet record (TrainState.mined): store rows and the boundary's verdict bits
MINED_COLUMNS = ("step", "anchor", "positive", "negative", "bits")
# bits of a tuple's verdict in one epoch (``TrainState.epoch_drops``)
TOO_FAR, TOO_CLOSE, SUSPECT = 1, 2, 4
DROP_COLUMNS = ("n_seen", "n_too_far", "n_too_close", "n_suspect")


def _no_array() -> np.ndarray:
    return np.empty(0)


@dataclass
class TrainState:  # every array is set by TrainState.new or read from a checkpoint
    step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    drops: np.ndarray = field(
        default_factory=_no_array
    )  # [n_tuples, 4]: seen, too_far, too_close, suspect member
    epoch_drops: np.ndarray = field(
        default_factory=_no_array
    )  # [epochs, n_tuples] uint8: TOO_FAR | TOO_CLOSE | SUSPECT bits
    suspicion: np.ndarray = field(
        default_factory=_no_array
    )  # [n_store_rows, 2]: sum of label suspicion, screened visits
    mined: np.ndarray = field(
        default_factory=_no_array
    )  # batch-hard: [n, 5] MINED_COLUMNS, one row per mined triplet
    margins: np.ndarray = field(
        default_factory=_no_array
    )  # [epochs, K, K]: the class-pair margins at each epoch's end

    @classmethod
    def new(cls, n_tuples: int, epochs: int, n_images: int, n_classes: int = 0) -> TrainState:
        return cls(
            drops=np.zeros((n_tuples, len(DROP_COLUMNS)), np.int64),
            epoch_drops=np.zeros((epochs, n_tuples), np.uint8),
            suspicion=np.zeros((n_images, 2)),
            mined=np.zeros((0, len(MINED_COLUMNS)), np.int64),
            margins=np.full((epochs, n_classes, n_classes), np.nan),
        )


def save_checkpoint(
    run: Path,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    screen: InLoopScreen,
    state: TrainState,
    fingerprint: str,
    margins: PairMargins | None = None,
) -> None:
    ck = run / CKPT_DIR
    ck.mkdir(parents=True, exist_ok=True)
    tag = f"step_{state.step:07d}"
    save_weights(net, ck / f"{tag}.safetensors")
    with atomic_path(ck / f"{tag}.state.pt") as tmp:
        torch.save(
            {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "screen": screen.state(),
                "drops": torch.from_numpy(state.drops),
                "epoch_drops": torch.from_numpy(state.epoch_drops),
                "suspicion": torch.from_numpy(state.suspicion),
                "mined": torch.from_numpy(state.mined),
                "margins": torch.from_numpy(state.margins),
                **({"pair_margins": margins.state()} if margins is not None else {}),
            },
            tmp,
        )
    write_parquet(pd.DataFrame(state.rows), ck / f"{tag}.metrics.parquet")
    files = {name: file_sha256(ck / name) for name in _checkpoint_files(tag)}
    write_json(
        {
            "format": CKPT_FORMAT,
            "step": state.step,
            "tag": tag,
            "fingerprint": fingerprint,
            "sha256": files,
        },
        ck / "last.json",
    )
    for old in ck.glob("step_*"):
        if not old.name.startswith(tag + "."):
            old.unlink(missing_ok=True)


def _checkpoint_files(tag: str) -> tuple[str, str, str]:
    return f"{tag}.safetensors", f"{tag}.state.pt", f"{tag}.metrics.parquet"


def load_checkpoint(
    run: Path,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    screen: InLoopScreen,
    fingerprints: tuple[str, ...],
    fresh: TrainState,
    total: int,
    margins: PairMargins | None = None,
) -> TrainState | None:
    """The checkpoint of ``run``, checked before anything is loaded: ``last.json`` names a
    step within the run and its own files, every file has the sha256 it was written with
    (checkpoints of format 1 had none), its arrays have the shapes of ``fresh`` (the state
    of a new run on the same tuples), and the metrics agree with the step."""
    last = run / CKPT_DIR / "last.json"
    if not last.exists():
        return None
    hint = "pass --restart to discard the checkpoint and train from the start"
    meta = read_json_file(last, what="checkpoint record", hint=hint, max_bytes=2**20)
    step = meta.get("step") if isinstance(meta, dict) else None
    if not (isinstance(step, int) and not isinstance(step, bool) and 0 < step <= total):
        raise CurateError(
            f"corrupted checkpoint record {last}: step must be a whole number from 1 to the run's "
            f"{total:,} steps, got {step!r}",
            hint=hint,
        )
    tag = f"step_{step:07d}"
    if meta.get("tag") != tag:
        raise CurateError(
            f"corrupted checkpoint record {last}: tag {meta.get('tag')!r} does not match step {step}",
            hint=hint,
        )
    if meta.get("fingerprint") not in fingerprints:
        raise CurateError(
            f"{run} holds a checkpoint of a run with other settings or other tuples",
            hint="use another --out, run the same command as before, or pass --restart",
        )
    ck = run / CKPT_DIR
    sums = meta.get("sha256")
    if not (
        meta.get("format") is None and sums is None
    ):  # format 1 (no checksums) resumes unchecked
        for name in _checkpoint_files(tag):
            want = sums.get(name) if isinstance(sums, dict) else None
            try:
                got = file_sha256(ck / name)
            except OSError as exc:
                raise CurateError(
                    f"corrupted checkpoint {ck / name}: {exc.strerror or exc}", hint=hint
                ) from exc
            if got != want:
                raise CurateError(
                    f"corrupted checkpoint {ck / name}: its sha256 differs from the one recorded "
                    "when it was written (the file was damaged or changed)",
                    hint=hint,
                )
    weights = load_weights_file(ck / f"{tag}.safetensors")
    try:
        net.load_state_dict(weights, strict=True)
        blob = torch_load(ck / f"{tag}.state.pt")
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        screen.load_state(blob["screen"])
        arrays = {k: blob[k].numpy() for k in ("drops", "epoch_drops", "suspicion")}
        # checkpoints of a curate without batch-hard mining have no mined triplets or margins
        arrays["margins"] = blob["margins"].numpy() if "margins" in blob else fresh.margins
        mined = blob["mined"].numpy() if "mined" in blob else fresh.mined
        if margins is not None and "pair_margins" in blob:
            margins.load_state(blob["pair_margins"])
        rows = read_parquet(ck / f"{tag}.metrics.parquet", what="checkpoint metrics").to_dict(
            "records"
        )
    except CurateError as exc:
        raise CurateError(f"corrupted checkpoint {ck / tag}: {exc.message}", hint=hint) from exc
    except Exception as exc:  # torch raises many types for a damaged file
        raise CurateError(
            f"corrupted checkpoint {ck / tag}: {str(exc).splitlines()[0][:300] if str(exc) else exc!r}",
            hint=hint,
        ) from exc
    for k, v in arrays.items():
        if v.shape != getattr(fresh, k).shape:
            raise CurateError(
                f"checkpoint {ck / tag} does not match the tuples ({k} {v.shape})",
                hint="pass --restart",
            )
    n_train = sum(1 for r in rows if r.get("phase") == "train")
    if n_train != step:
        raise CurateError(
            f"corrupted checkpoint {ck / tag}: its metrics hold {n_train} training steps, "
            f"its record says {step}",
            hint=hint,
        )
    return TrainState(
        step=step,
        rows=[{k: _plain(v) for k, v in r.items()} for r in rows],
        mined=mined.astype(np.int64),
        **{k: v.astype(getattr(fresh, k).dtype) for k, v in arrays.items()},
    )


def copy_buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the network's buffers (BatchNorm running statistics)."""
    return {k: v.detach().clone() for k, v in net.named_buffers()}


def restore_buffers(net: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, v in net.named_buffers():
            v.copy_(saved[k])


def val_row_missing(state: TrainState, n_batches: int, total: int) -> bool:
    """True when the last completed step ended an epoch and that epoch's validation row is
    missing (the run was interrupted while validating)."""
    if state.step == 0 or not (state.step % n_batches == 0 or state.step == total):
        return False
    return not any(r.get("phase") == "val" and r.get("step") == state.step - 1 for r in state.rows)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v
