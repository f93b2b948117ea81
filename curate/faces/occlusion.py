"""The occlusion network: small CNNs that read an aligned 48x48 face and say whether
something covers it, and whether that something is only a pair of clear glasses. Its
weights ship in ``curate/models/faces/occlusion.safetensors``; :mod:`curate.faces.fit_occlusion`
is the recipe that makes them.

Two scores per face (:meth:`OcclusionModel.scores`):

* ``occlusion_any``: anything over part of the face (a hand, glasses of any kind, a
  mask, hair over an eye, an object), the definition of occlusion benchmarks use;
* ``occlusion``: occluded for expression recognition (the occlusion policy of
  ``docs/faces.md``): anything but clear glasses alone, i.e.
  ``occlusion_any * (1 - P(clear glasses only))``. Faces behind clear glasses keep
  their expression labels as well as bare faces do; hands, sunglasses and masks do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.faces.geometry import ALIGN_SIZE

# Faces per forward pass of the occlusion networks: a fixed shape, bit-identical scores
# (the same at any size). 16 take a fifth less CPU per face than 32 alone on an otherwise
# idle core, but not in analyze_faces beside busy face workers (docs/faces.md, "Speed").
SCORE_CHUNK = 32

# Outputs of the networks of the synthetic stages (1-4): occluded, then one per region.
REGIONS = ("eyes", "nose", "mouth", "lower face")
# Outputs of the shipped networks (the labelled stage): anything over the face, and clear
# glasses being all there is.
OUTPUTS = ("covered", "clear_glasses_only")
OCCLUSION_WEIGHTS = (
    Path(__file__).resolve().parents[1] / "models" / "faces" / "occlusion.safetensors"
)
OCCLUSION_CHANNELS = (12, 24, 48)
# Above this ``occlusion`` a face counts as occluded: the face screen's default. Chosen
# without the face-conditions benchmark and without any holdout face: the best-F1
# threshold of ``occlusion`` against the occlusion policy on the 5-fold out-of-fold scores
# of the randomly sampled dev hand labels (bench/derivations/occlusion_threshold.py, docs/faces.md),
# re-derived for the expression-balanced weights (0.41 was the rule on the weights before)
# and again for the weights fitted with painted collars (``faces-8``): 0.44 again; for the
# weights fitted twice as long and averaged into one network (``faces-9``): 0.45.
OCCLUSION_THRESHOLD = 0.45


def build_occlusion_net(n_outputs: int = 1 + len(REGIONS)) -> Any:
    """The occlusion network: three conv stages on a 48x48 aligned grey face.

    ``n_outputs`` logits: five for the synthetic stages (``occluded`` and one per region of
    :data:`REGIONS`), two for the shipped networks (:data:`OUTPUTS`).
    """
    from torch import nn

    layers: list[nn.Module] = []
    c_in = 1
    for c_out in OCCLUSION_CHANNELS:
        layers += [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = c_out
    layers += [
        nn.Conv2d(c_in, c_in, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(c_in, n_outputs),
    ]
    return nn.Sequential(*layers)


def standardize_faces(aligned: np.ndarray) -> np.ndarray:
    """Per-image zero mean, unit variance: (N, 48, 48) uint8/float -> (N, 1, 48, 48) float32."""
    x = np.asarray(aligned, dtype=np.float32).reshape(-1, ALIGN_SIZE, ALIGN_SIZE)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return ((x - mean) / np.maximum(std, 8.0))[:, None]


def split_members(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The networks stored in one occlusion weights file.

    A file holds one network (plain parameter names) or several, whose parameters are
    prefixed ``member0.``, ``member1.``, ...; the score averages the members.
    """
    if not any(k.startswith("member") for k in state):
        return [state]
    members: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        head, _, name = key.partition(".")
        members.setdefault(int(head.removeprefix("member")), {})[name] = value
    return [members[i] for i in sorted(members)]


def n_outputs(state: dict[str, Any]) -> int:
    """How many outputs the network of ``state`` has (its last layer's rows)."""
    last = max((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[0]))
    return int(state[last].shape[0])


def covered_scores(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``occlusion``, ``occlusion_any``) from network outputs: with a clear-glasses head
    (:data:`OUTPUTS`) ``occlusion = covered * (1 - clear_glasses_only)``; a network without
    one (the synthetic stages) gives its ``occluded`` output for both."""
    probs = np.asarray(probs, dtype=np.float64)
    covered = probs[:, 0]
    if probs.shape[1] == len(OUTPUTS):
        return covered * (1.0 - probs[:, 1]), covered
    return covered, covered


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where
    :class:`OcclusionModel` runs its networks in bfloat16 (twice as fast)."""
    import torch

    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check is not None and check()) or (amx is not None and amx()))


def mean_probabilities(
    nets: Sequence[Any],
    aligned: np.ndarray,
    *,
    channels_last: bool = False,
    chunk: int = 1024,
    mirror: bool = True,
    bf16: bool = False,
) -> np.ndarray:
    """Sigmoid outputs of occlusion networks in eval mode, shape (N, outputs), for aligned faces,
    ``chunk`` faces at a time (memory stays small for any N).

    Each is the mean over ``nets`` and, for each, over the face and its mirror image
    (occlusion and the regions are symmetric; averaging views and networks steadies the
    score). ``channels_last`` hands the networks NHWC input (for :func:`inference_copy`).
    ``mirror=False``: the face alone (networks fitted on randomly mirrored faces need no
    mirror view; half the work). ``bf16``: the networks run under bfloat16 autocast (on a
    CPU with native bfloat16 twice as fast; probabilities within about 0.006 of float32).
    """
    import torch

    faces = np.asarray(aligned).reshape(-1, ALIGN_SIZE, ALIGN_SIZE)
    out = []
    for i in range(0, max(len(faces), 1), chunk):
        part = faces[i : i + chunk]
        views = torch.from_numpy(
            standardize_faces(np.concatenate([part, part[:, :, ::-1]]) if mirror else part)
        )
        if channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probs = np.mean([torch.sigmoid(net(views)).float().numpy() for net in nets], axis=0)
        out.append(0.5 * (probs[: len(part)] + probs[len(part) :]) if mirror else probs)
    return np.concatenate(out).astype(np.float64)


def strided_max_pool() -> Any:
    """A module computing ``nn.MaxPool2d(2)`` (floor mode) as the largest of the four
    strided quarters of its input: the same numbers, several times faster than torch's
    channels-last bfloat16 kernel on the 12-channel 48x48 maps of the first stage."""
    global _StridedMax2d
    if _StridedMax2d is None:
        import torch
        from torch import nn

        class StridedMax2d(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
                return torch.maximum(
                    torch.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 1:h:2, 0:w:2]),
                    torch.maximum(x[:, :, 0:h:2, 1:w:2], x[:, :, 1:h:2, 1:w:2]),
                )

        _StridedMax2d = StridedMax2d
    return _StridedMax2d()


_StridedMax2d: Any = None


def inference_copy(net: Any) -> Any:
    """A copy of an occlusion network for inference only: each batch norm folded into the
    convolution before it, weights in channels-last order, each ``ReLU, MaxPool2d(2)`` pair
    run as the pooling (:func:`strided_max_pool`) first, the ReLU on the four times smaller
    result (max and ReLU commute: the same numbers). Twice as fast on one CPU thread; the
    outputs agree with the eval-mode network to about 1e-7."""
    import copy

    import torch
    from torch import nn

    layers = list(net.children()) if isinstance(net, nn.Sequential) else [copy.deepcopy(net)]
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if (
            isinstance(layer, nn.ReLU)
            and isinstance(following, nn.MaxPool2d)
            and _is_plain_2x2_pool(following)
        ):
            out += [strided_max_pool(), nn.ReLU(inplace=True)]
            i += 2
        elif (
            isinstance(layer, nn.Conv2d)
            and isinstance(following, nn.BatchNorm2d)
            and layer.groups == 1
        ):
            conv = copy.deepcopy(layer)
            var, mean = following.running_var, following.running_mean
            assert var is not None and mean is not None  # track_running_stats: always kept here
            scale = following.weight.detach() / torch.sqrt(var + following.eps)
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(scale)
            conv.weight = nn.Parameter(layer.weight.detach() * scale[:, None, None, None])
            conv.bias = nn.Parameter((bias - mean) * scale + following.bias.detach())
            out.append(conv)
            i += 2
        else:
            out.append(copy.deepcopy(layer))
            i += 1
    return nn.Sequential(*out).eval().to(memory_format=torch.channels_last)


def _is_plain_2x2_pool(pool: Any) -> bool:
    """Whether ``pool`` is ``nn.MaxPool2d(2)``: 2x2 windows, stride 2, no padding, floor mode."""

    def pair(v: Any) -> tuple[Any, Any]:
        return tuple(v) if isinstance(v, tuple | list) else (v, v)

    return (
        pair(pool.kernel_size) == (2, 2)
        and pair(pool.stride) == (2, 2)
        and pair(pool.padding) == (0, 0)
        and pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )


class OcclusionModel:
    """The fitted occlusion network(s), run on aligned 48x48 faces (CPU, one thread)."""

    def __init__(self, weights: Path = OCCLUSION_WEIGHTS) -> None:
        from safetensors.torch import load_file

        if not weights.is_file():
            raise CurateError(
                f"occlusion weights not found: {weights}",
                hint="reinstall curate, or refit them with bench/recipes/fit_occlusion.py (docs/faces.md)",
            )
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        # weights say how they are scored: "mirror": "false" scores the face alone
        self.mirror = meta.get("mirror", "true") != "false"
        self.nets = []
        members = split_members(load_file(str(weights)))
        outputs = {n_outputs(state) for state in members}
        if len(outputs) != 1 or not outputs <= {len(OUTPUTS), 1 + len(REGIONS)}:
            raise CurateError(
                f"occlusion weights {weights} hold networks with {sorted(outputs)} outputs",
                hint=f"one weights file holds networks of {len(OUTPUTS)} (or "
                f"{1 + len(REGIONS)}) outputs, all alike",
            )
        for state in members:
            net = build_occlusion_net(n_outputs(state))
            net.load_state_dict(state)
            self.nets.append(net.eval())
        self._inference = [inference_copy(net) for net in self.nets]
        self.bf16 = bf16_supported()  # part of the face cache key (curate.faces.analyze)

    def probabilities(self, aligned: np.ndarray) -> np.ndarray:
        """Sigmoid outputs, shape (N, outputs): :data:`OUTPUTS` for the shipped networks,
        occluded and one column per region for the synthetic stages
        (:func:`mean_probabilities` of the networks in the weights file, run as their
        :func:`inference_copy`, on one torch thread).

        Faces are scored in chunks of exactly :data:`SCORE_CHUNK` (the last one padded),
        so a face's scores depend on its pixels only, bit for bit, never on which faces
        share its batch: a run resumed after Ctrl-C scores like an uninterrupted one."""
        import torch

        faces = np.asarray(aligned).reshape(-1, ALIGN_SIZE, ALIGN_SIZE)
        n = len(faces)
        pad = (-n) % SCORE_CHUNK
        if pad:
            faces = np.concatenate(
                [faces, np.zeros((pad, ALIGN_SIZE, ALIGN_SIZE), dtype=faces.dtype)]
            )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batches: more threads only spin, the more so when busy
        try:
            return mean_probabilities(
                self._inference,
                faces,
                channels_last=True,
                chunk=SCORE_CHUNK,
                mirror=self.mirror,
                bf16=self.bf16,
            )[:n]
        finally:
            torch.set_num_threads(threads)

    def scores(self, aligned: np.ndarray) -> list[tuple[float, float]]:
        """(``occlusion``, ``occlusion_any``), each 0..1, for each of N aligned faces
        (N x 48 x 48), see :func:`covered_scores`."""
        occlusion, covered = covered_scores(self.probabilities(aligned))
        return [(float(o), float(c)) for o, c in zip(occlusion, covered, strict=True)]

    def score(self, aligned: np.ndarray) -> tuple[float, float]:
        """:meth:`scores` of one aligned face (48 x 48)."""
        return self.scores(aligned[None])[0]
