"""The per-image stages on a Ray cluster (the optional extra ``curate[ray]``).

:class:`RayEngine` runs embedding and face analysis as Ray Data ``map_batches`` over the
table of images that the content-addressed caches do not hold yet, with the model
loaded once per actor (one actor per GPU, or per CPU when there are none). The driver,
this process, writes every result into the same caches the local path writes
(:func:`curate.embed.embed_images_result`, :func:`curate.faces.analyze_faces`) as
results arrive, so the rest of the pipeline, a later local run and an interrupted Ray
run all reuse them. The actors compute with the local path's own functions:
:func:`curate.embed.prepare_batch` and :func:`curate.embed.embed_batch` for a batch of
embeddings, ``FaceFinder.find_many`` and ``face_rows`` (:mod:`curate.faces.landmarks`)
for a batch of faces.

Every node must see the image files under the same paths (a shared file system) and
have curate installed; the caches live where the driver runs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curate.errors import CurateError

if TYPE_CHECKING:
    from curate.backbone import LoadedBackbone

INSTALL_HINT = "pip install 'curate[ray]' (Ray Data) on the driver and on every node"
LOCAL = "local"
FACE_BATCH = 64  # images per face-actor call: the local path's batch (curate.faces.landmarks.BATCH)


def available() -> bool:
    """Whether Ray Data is installed."""
    return importlib.util.find_spec("ray") is not None


@dataclass(frozen=True)
class RayEngine:
    """Where and how the per-image stages run on Ray.

    ``address``: ``"auto"`` (the cluster this machine belongs to: ``ray start`` or
    ``RAY_ADDRESS``), ``"local"`` (start a Ray instance in this process), or a cluster
    address (``HOST:PORT``, ``ray://HOST:PORT``); when Ray is already initialised in
    this process that instance is used. ``actors``: how many model copies (default: one
    per GPU of the cluster when ``device`` allows CUDA and there are GPUs, else one per
    CPU). ``device``: ``"auto"``, ``"cpu"`` or ``"cuda"`` for the actors.
    """

    address: str = "auto"
    actors: int | None = None
    device: str = "auto"

    def describe(self) -> str:
        """How the run record names this engine."""
        return f"ray:{self.address}"

    def embeds_on_cuda(self) -> bool:
        """Whether the embedding actors run on GPUs (then with CUDA autocast, which is
        part of the embedding cache key: :func:`curate.embed.cache_settings`)."""
        return bool(self._actors(self._connect())[1])

    # ------------------------------------------------------------------ stages
    def embed(
        self, keys: list[str], paths: list[str], loaded: LoadedBackbone, batch_size: int
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Embeddings of ``paths`` (cache ``keys``) in batches of ``batch_size``, in any order."""
        ray = self._connect()
        n, gpus = self._actors(ray)
        ref = ray.put(
            replace(loaded, model=loaded.model.to("cpu"))
        )  # shipped once to the object store
        ds = ray.data.from_items([{"key": k, "path": p} for k, p in zip(keys, paths, strict=True)])
        out = ds.map_batches(
            _EmbedActor,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n),
            num_cpus=None if gpus else 1,
            num_gpus=1 if gpus else None,
            fn_constructor_kwargs={"refs": [ref], "use_gpu": bool(gpus)},
        )
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            yield [str(k) for k in batch["key"]], np.asarray(batch["embedding"], dtype=np.float32)

    def analyze_faces(
        self, keys: list[str], paths: list[str], model_path: Path, backend: str
    ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Face rows of ``paths`` (:func:`curate.faces.landmarks.face_rows`), in any order."""
        from curate.faces.analyze import COLUMNS

        ray = self._connect()
        n = self._actors(ray, gpu_capable=False)[0]
        ds = ray.data.from_items([{"key": k, "path": p} for k, p in zip(keys, paths, strict=True)])
        out = ds.map_batches(
            _FaceActor,
            batch_size=FACE_BATCH,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=n),
            num_cpus=1,
            fn_constructor_kwargs={"model_path": str(model_path), "backend": backend},
        )
        for df in out.iter_batches(batch_size=None, batch_format="pandas"):
            yield [(str(rec.pop("key")), _plain_row(rec, COLUMNS)) for rec in df.to_dict("records")]

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> Any:
        if not available():
            raise CurateError("--ray needs Ray Data, which is not installed", hint=INSTALL_HINT)
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            try:
                if self.address == LOCAL:
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    ray.init(**kwargs)
                else:
                    ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise CurateError(
                    f"cannot connect to the Ray cluster at --ray {self.address}: {exc}",
                    hint="start one with `ray start --head` (then --ray auto), pass its "
                    "address, or use --ray local for a Ray instance on this machine",
                ) from exc
        ray.data.DataContext.get_current().enable_progress_bars = False
        return ray

    def _actors(self, ray: Any, gpu_capable: bool = True) -> tuple[int, int]:
        """(number of actors, GPUs in the cluster used by them: 0 for CPU actors)."""
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0)) if gpu_capable and self.device != "cpu" else 0
        if self.device.startswith("cuda") and gpu_capable and not gpus:
            raise CurateError(
                f"--device {self.device} with --ray, but the Ray cluster has no GPUs",
                hint="use --device auto or cpu, or add GPU nodes to the cluster",
            )
        if self.actors is not None and self.actors < 1:
            raise CurateError(f"--ray-actors must be at least 1, got {self.actors}")
        n = self.actors or (gpus or max(1, int(res.get("CPU", 1))))
        return n, gpus


class _EmbedActor:
    """One model per actor; each call embeds one batch with the local path's functions."""

    def __init__(self, refs: list[Any], use_gpu: bool) -> None:
        import ray
        import torch

        self.loaded = ray.get(refs[0])
        self.device = torch.device("cuda" if use_gpu else "cpu")
        if not use_gpu:
            torch.set_num_threads(1)  # one CPU per actor
        self.loaded.model.to(self.device).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from curate.embed import embed_batch, prepare_batch

        x = prepare_batch(batch["path"].tolist(), self.loaded, self.device)
        return {"key": batch["key"], "embedding": embed_batch(self.loaded.model, x)}


class _FaceActor:
    """One face finder and one occlusion network per actor; each call is one batch of the
    local path's functions (``FaceFinder.find_many``, ``face_rows``)."""

    def __init__(self, model_path: str, backend: str) -> None:
        import torch

        from curate.faces.landmarks import make_finder, quiet_native_stderr
        from curate.faces.occlusion import OcclusionModel

        torch.set_num_threads(1)
        with quiet_native_stderr():
            self.finder = make_finder(backend, Path(model_path))
        self.occlusion = OcclusionModel()

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        from curate.faces.analyze import COLUMNS
        from curate.faces.landmarks import face_rows

        paths = batch["path"].tolist()
        found = self.finder.find_many(paths)
        out = pd.DataFrame(face_rows(paths, found, self.occlusion), columns=COLUMNS)
        out.insert(0, "key", batch["key"].to_numpy())
        return out


def _plain_row(rec: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """A row as :func:`curate.faces.landmarks.face_rows` makes it: missing text is None,
    numbers are Python floats, ``face_found`` a bool."""
    import pandas as pd

    out: dict[str, Any] = {}
    for c in columns:
        v = rec.get(c)
        if c == "face_found":
            out[c] = bool(v)
        elif c in ("path", "detail"):
            out[c] = None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
        else:
            out[c] = float(v) if v is not None and not pd.isna(v) else float("nan")
    return out
