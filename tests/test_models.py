"""The bundled default backbone loads offline and gives expression-aware embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from curate.cli import app
from curate.models import default_model_dir, list_models
from curate.runs import load_run


def test_bundled_model_files_and_size() -> None:
    d = default_model_dir()
    assert (d / "model.safetensors").stat().st_size <= 10_000_000
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["backbone"] == "resnet10t" and cfg["embed_dim"] == 128
    assert cfg["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert (d / "README.md").exists()


def test_bundled_model_forward_pass() -> None:
    net, cfg = load_run(default_model_dir())
    net.eval()
    x = torch.randn(4, *cfg["data_config"]["input_size"])
    with torch.inference_mode():
        emb = net(x)
        logits = net.classify(x)
    assert emb.shape == (4, 128)
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), cfg["scale"], rtol=1e-4)
    assert logits.shape == (4, 7)
    assert emb.dtype == torch.float32  # fp16 file, fp32 compute


def test_every_bundled_model_loads_within_25_mb_and_has_a_card() -> None:
    from curate.models import MODELS_DIR, bundled_models

    names = {e.name for e in bundled_models()}
    assert {"fer_resnet10t", "ferplus_resnet10t"} <= names
    for name in names:
        d = MODELS_DIR / name
        assert (d / "model.safetensors").stat().st_size <= 25_000_000 and (d / "README.md").exists()
        net, cfg = load_run(d)
        net.eval()
        with torch.inference_mode():
            emb = net(torch.randn(2, *cfg["data_config"]["input_size"]))
        assert emb.shape == (2, cfg["embed_dim"]) and torch.isfinite(emb).all()


def test_ferplus_model_beats_the_default_on_ferplus_plurality_labels(
    shared_data: Path, tmp_path: Path
) -> None:
    """The successor of issue 24 agrees more often with the FERPlus plurality on every 3rd
    PublicTest face than the default does (its measured gap on all of PublicTest: 0.82 vs 0.62;
    on a class-balanced sample the gap is small: the gain is in the frequent classes)."""
    import pandas as pd

    from curate.train.evaluate import evaluate

    votes = pd.read_csv(shared_data / "ferplus" / "ferplus_votes_train_val.csv")
    votes = votes[votes["split"] == "valid"].dropna(subset=["plurality_label_8cls"])
    to_fer = {
        "anger": "angry",
        "happiness": "happy",
        "sadness": "sad",
        "neutral": "neutral",
        "surprise": "surprise",
        "fear": "fear",
        "disgust": "disgust",
    }
    votes = votes[votes["plurality_label_8cls"].isin(list(to_fer))]
    rows = votes.sort_values("path").iloc[::3]
    manifest = tmp_path / "m.csv"
    pd.DataFrame(
        {
            "path": [str(shared_data / "fer2013" / p) for p in rows["path"]],
            "label": rows["plurality_label_8cls"].map(to_fer),
        }
    ).to_csv(manifest, index=False)
    acc = {
        m: evaluate(m, manifest, device="cpu").metrics["accuracy"]
        for m in ("ferplus_resnet10t", "fer_resnet10t")
    }
    assert acc["ferplus_resnet10t"] > acc["fer_resnet10t"] + 0.04, acc


def test_bundled_model_recognises_real_expressions(shared_data: Path) -> None:
    """On 20 real FER2013 val faces per class it is far above chance (1/7)."""
    from curate.images import load_image
    from curate.train.data import to_model_input

    net, cfg = load_run(default_model_dir())
    net.eval()
    size = cfg["data_config"]["input_size"][1:]
    xs, ys = [], []
    for k, cls in enumerate(cfg["classes"]):
        for p in sorted((shared_data / "fer2013" / "val" / cls).iterdir())[:20]:
            im = load_image(p, in_chans=1).resize(tuple(size[::-1]))
            xs.append(torch.from_numpy(np.array(im, dtype=np.uint8))[None])
            ys.append(k)
    x = to_model_input(torch.stack(xs), cfg["data_config"])
    with torch.inference_mode():
        pred = net.classify(x).argmax(1).numpy()
    assert (pred == np.array(ys)).mean() > 0.45


def test_models_command_lists_bundled() -> None:
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert "fer_resnet10t" in res.output and "bundled" in res.output
    assert any(e.kind == "bundled" for e in list_models())


def test_default_backbone_used_when_none_given() -> None:
    from curate.backbone import load_backbone

    loaded = load_backbone(None)
    assert loaded.embed_dim == 128 and not loaded.random_weights
    from curate.models import DEFAULT_MODEL

    assert DEFAULT_MODEL in loaded.weights_source
