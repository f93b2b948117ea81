"""Data-parallel fine-tuning (curate.train.data_parallel): two CPU ranks (gloo) against one
process with the same global batch: the same tuples kept at every step, the same loss
curve within float tolerance, and resume from a checkpoint under two ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from test_train import make_build, tiny_config

from curate.train.data_parallel import SINGLE, Parallel, SyncBatchNorm, sync_batchnorm
from curate.train.loop import finetune

ROOT = Path(__file__).resolve().parents[1]
CLI_TINY = [
    "--backbone",
    "test_resnet",
    "--weights",
    "none",
    "--in-chans",
    "1",
    "--input-size",
    "16",
    "--embed-dim",
    "16",
    "--epochs",
    "2",
    "--batch-tuples",
    "8",
    "--device",
    "cpu",
    "--seed",
    "3",
    "--screen-window",
    "64",
    "--checkpoint-every",
    "0",
    "--lr",
    "3e-3",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)


def test_shards_cover_every_row_once_in_rank_order():
    for n in (0, 1, 5, 8, 13):
        for world in (1, 2, 3):
            parts = [Parallel(r, world).shard(n) for r in range(world)]
            assert sum((list(range(n))[s] for s in parts), []) == list(range(n))
    assert not SINGLE.enabled and SINGLE.is_main


def _grad_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    _join(rank, world, port)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    net = sync_batchnorm(
        torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3),
            torch.nn.BatchNorm2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 36, 5),
        )
    )
    head = torch.nn.Linear(5, 3)
    par = Parallel(rank, world, rank)
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    emb = par.forward(net, x)
    loss = head(emb).pow(2).mean() + emb[[0, 6]].sum()  # rows of both ranks, after the gather
    loss.backward()
    params = [*net.parameters(), *head.parameters()]
    par.average_gradients(params)
    if rank == 0:
        torch.save(
            {
                "emb": emb.detach(),
                "loss": loss.detach(),
                "grads": [p.grad for p in params],
                "running_mean": net[1].running_mean.clone(),
                "running_var": net[1].running_var.clone(),
            },
            out,
        )
    dist.destroy_process_group()


def test_sharded_forward_gathered_batch_and_averaged_gradients_equal_one_process(tmp_path):
    out = tmp_path / "ranks.pt"
    mp.start_processes(
        _grad_worker, args=(2, _free_port(), str(out)), nprocs=2, start_method="spawn"
    )
    got = torch.load(out)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 36, 5),
    )
    head = torch.nn.Linear(5, 3)
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    emb = net(x)
    loss = head(emb).pow(2).mean() + emb[[0, 6]].sum()
    loss.backward()
    assert torch.allclose(got["emb"], emb.detach(), atol=1e-5)
    assert torch.allclose(got["loss"], loss.detach(), atol=1e-5)
    for g, p in zip(got["grads"], [*net.parameters(), *head.parameters()], strict=True):
        assert torch.allclose(g, p.grad, atol=1e-5, rtol=1e-4)
    assert torch.allclose(got["running_mean"], net[1].running_mean, atol=1e-6)
    assert torch.allclose(got["running_var"], net[1].running_var, atol=1e-5)


def test_sync_batchnorm_is_plain_batchnorm_in_one_process_and_names_what_it_cannot_sync():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    synced = sync_batchnorm(torch.nn.Sequential(bn))[0]
    assert isinstance(synced, SyncBatchNorm)
    x = torch.randn(4, 3, 5, 5)
    assert torch.allclose(synced(x), torch.nn.BatchNorm2d(3)(x), atol=1e-6)

    class FusedBN(torch.nn.BatchNorm2d):
        pass

    from curate.errors import CurateError

    with pytest.raises(CurateError, match="FusedBN"):
        sync_batchnorm(torch.nn.Sequential(FusedBN(3)))


def _train(train: pd.DataFrame) -> pd.DataFrame:
    return train[train["phase"] == "train"].reset_index(drop=True)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_keep_the_same_tuples_and_loss_as_one_process(tmp_path):
    build = make_build(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate",
            "finetune",
            str(build),
            "--out",
            str(tmp_path / "one"),
            *CLI_TINY,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(_free_port()),
            "-m",
            "curate",
            "finetune",
            str(build),
            "--out",
            str(tmp_path / "two"),
            *CLI_TINY,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert two.stdout.count("finetune:") == 1  # rank 0 alone reports
    a = _train(pd.read_parquet(tmp_path / "one" / "metrics.parquet"))
    b = _train(pd.read_parquet(tmp_path / "two" / "metrics.parquet"))
    # batch-hard mining (the default): one P x K batch of the 30 train tuples' images per epoch
    assert len(a) == len(b) == 2
    assert a["n_kept"].tolist() == b["n_kept"].tolist()
    assert np.allclose(a["loss"], b["loss"], rtol=1e-4, atol=1e-5)
    assert np.allclose(a["t_pos"], b["t_pos"], rtol=1e-5)
    da = pd.read_parquet(tmp_path / "one" / "tuple_drops.parquet")
    db = pd.read_parquet(tmp_path / "two" / "tuple_drops.parquet")
    pd.testing.assert_frame_equal(da, db)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["counts"]["steps"] == 2


def _ddp_finetune(
    rank: int, world: int, port: int, build: str, run: str, stop_at: int | None
) -> None:
    _join(rank, world, port)

    def stop(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "train" and done == stop_at:
            raise KeyboardInterrupt

    try:
        finetune(build, run, tiny_config(), progress=stop if stop_at else None)
    except KeyboardInterrupt:
        pass
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_an_interrupted_two_rank_run_resumes_to_the_uninterrupted_one(tmp_path):
    build = str(make_build(tmp_path / "data"))
    for run, stop_at in (("full", None), ("cut", 3)):
        mp.start_processes(
            _ddp_finetune,
            args=(2, _free_port(), build, str(tmp_path / run), stop_at),
            nprocs=2,
            start_method="spawn",
        )
    assert json.loads((tmp_path / "cut" / "checkpoints" / "last.json").read_text())["step"] == 3
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    mp.start_processes(
        _ddp_finetune,
        args=(2, _free_port(), build, str(tmp_path / "cut"), None),
        nprocs=2,
        start_method="spawn",
    )
    full = pd.read_parquet(tmp_path / "full" / "metrics.parquet")
    cut = pd.read_parquet(tmp_path / "cut" / "metrics.parquet")
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["resumed_from_step"] == 3
    assert _train(full)["n_kept"].tolist() == _train(cut)["n_kept"].tolist()
    assert np.allclose(_train(full)["loss"], _train(cut)["loss"], rtol=1e-5, atol=1e-6)
