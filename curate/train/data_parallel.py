"""Data-parallel fine-tuning under ``torchrun`` (``torch.distributed``; gloo on CPU, NCCL on CUDA).

``torchrun --nproc-per-node N -m curate finetune ...`` starts N processes (ranks). At
every step all ranks hold the same global batch of tuples; each forwards its shard of
the batch's unique images (:meth:`Parallel.forward`) and the embeddings are all-gathered,
so every rank sees the whole batch: the in-loop boundary is fitted to, and the loss
computed on, exactly what one process would see. Gradients:

* the gather's backward sums the gradient of every rank's (identical) loss into the
  shard's rows, and :meth:`Parallel.average_gradients` averages the parameters'
  gradients over the ranks; together that is the one-process gradient, for the layers
  before the gather (each rank's shard) and after it (the classifier, on every rank);
* batch-norm statistics are those of the global batch (:class:`SyncBatchNorm`, which
  also works on CPU, unlike ``torch.nn.SyncBatchNorm``).

The model is replicated by hand rather than wrapped in ``DistributedDataParallel``: the
gradient passes through the all-gathered batch, and collectives issued inside its
backward would race DDP's bucketed all-reduce. Rank 0 writes checkpoints, metrics and
the report; every rank resumes from the same checkpoint. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) nothing here is used: :data:`SINGLE` does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from curate.errors import CurateError


@dataclass(frozen=True)
class Parallel:
    """This process's place among the ranks (``world == 1``: a single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and reports progress."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (the first ``n % world`` ranks get one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of the whole batch ``x``: this rank forwards its shard, the rest is all-gathered."""
        if not self.enabled:
            return net(x)
        return _GatherShards.apply(net(x[self.shard(len(x))]), self, len(x))

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace every parameter's gradient by its mean over the ranks (one all-reduce)."""
        if not self.enabled:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_from_main(self, module: nn.Module) -> None:
        """Make every rank's parameters and buffers those of rank 0."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Parallel()


def from_env(device: torch.device) -> tuple[Parallel, torch.device]:
    """The ranks ``torchrun`` set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), the process
    group joined (NCCL for CUDA, else gloo), and this rank's device (``cuda:LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device
    par = Parallel(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if device.type == "cuda":
        device = torch.device("cuda", par.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as exc:
            raise CurateError(
                f"cannot join the torchrun process group (rank {par.rank} of {world}): {exc}",
                hint="start with `torchrun --nproc-per-node N -m curate finetune ...`",
            ) from exc
    return par, device


class _GatherShards(torch.autograd.Function):
    """All-gather of the ranks' shards (rows of the global batch, in rank order).

    Backward: every rank computed the same loss from the gathered batch, so the gradient
    of a shard is the sum over the ranks of the gradient of their copy of it."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, par: Parallel, n: int) -> torch.Tensor:
        ctx.par, ctx.n = par, n
        size = Parallel(0, par.world).shard(n).stop  # the largest shard (rank 0's)
        padded = local.new_zeros((size, *local.shape[1:]))
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(par.world)]
        dist.all_gather(parts, padded.contiguous())
        rows = [Parallel(r, par.world).shard(n) for r in range(par.world)]
        return torch.cat([p[: s.stop - s.start] for p, s in zip(parts, rows, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total[ctx.par.shard(ctx.n)], None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the gradient is summed over the ranks as well."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class SyncBatchNorm(nn.BatchNorm2d):
    """Batch norm over the global batch of all ranks, on CPU and CUDA (training mode);
    the running statistics follow ``nn.BatchNorm``'s rules, so every rank keeps the
    ones one process would. Evaluation mode is plain batch norm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        xd = x.double()  # sums over the global batch in double: E[x^2] - E[x]^2 stays exact enough
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xd.sum(dims), (xd * xd).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        if (
            self.track_running_stats
            and self.running_mean is not None
            and self.running_var is not None
            and self.num_batches_tracked is not None
        ):
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xd - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        y = y.to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm1d/2d/3d`` replaced by :class:`SyncBatchNorm`
    (same parameters and running statistics). Other batch-norm layers (with a fused
    activation, for example) cannot be synced here: a :class:`CurateError` names them."""
    plain = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm) and type(child) in plain:
            new = SyncBatchNorm(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            new.to(next(child.buffers(), torch.empty(0)).device)
            new.train(child.training)
            setattr(module, name, new)
        elif isinstance(child, _BatchNorm) and not isinstance(child, SyncBatchNorm):
            raise CurateError(
                f"layer {name} ({type(child).__name__}) of this backbone is a batch norm "
                "curate cannot synchronise across torchrun ranks",
                hint="fine-tune this backbone in one process, or choose a backbone with "
                "plain BatchNorm layers (the resnet family)",
            )
        else:
            sync_batchnorm(child)
    return module
