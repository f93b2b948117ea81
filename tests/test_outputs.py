"""Outputs other tools read (issue 17): embeddings.parquet for pandas, pyarrow, polars,
DuckDB and `datasets`, and `curate export --format hf` loaded back with `datasets`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import fake_screen_faces, make_build, write_embeddings
from typer.testing import CliRunner

from curate.cli import app
from curate.export import export
from curate.screen import screen
from curate.screens import faces as face_screen_module

SIDE = 7  # the planted side face


@pytest.fixture()
def screened(tmp_path, monkeypatch):
    build, images, emb = make_build(tmp_path)

    monkeypatch.setattr(face_screen_module, "screen_faces", fake_screen_faces(SIDE))
    out = tmp_path / "screen"
    screen(build, out, embeddings=write_embeddings(tmp_path / "e.parquet", images, emb))
    return {"build": build, "images": images, "emb": emb, "out": out, "tmp": tmp_path}


# ----------------------------------------------------------------------------- embeddings.parquet
def test_embeddings_parquet_is_a_fixed_size_float32_list(screened):
    path = screened["out"] / "embeddings.parquet"
    schema = pq.read_schema(path)
    assert schema.names == [
        "image_id",
        "path",
        "label",
        "embedding",
        "representation",
        "missing_reason",
    ]
    assert schema.field("embedding").type == pa.list_(pa.float32(), 16)  # fixed size 16
    df = pd.read_parquet(path)
    images, emb = screened["images"], screened["emb"]
    assert df["image_id"].tolist() == images["image_id"].tolist()
    assert (
        df["label"].tolist() == images["label"].tolist()
        and df["path"].tolist() == images["path"].tolist()
    )
    matrix = np.stack(df["embedding"].to_numpy())
    assert matrix.dtype == np.float32 and np.allclose(matrix, emb.astype(np.float32))


def test_embeddings_parquet_round_trips_as_embeddings_input(screened):
    again = screened["tmp"] / "again"
    screen(
        screened["build"],
        again,
        embeddings=screened["out"] / "embeddings.parquet",
        skip_faces_screen=True,
    )
    first = screen(
        screened["build"],
        screened["tmp"] / "first",
        embeddings=write_embeddings(
            screened["tmp"] / "e2.parquet", screened["images"], screened["emb"]
        ),
        skip_faces_screen=True,
    )
    a = pd.read_parquet(again / "scores.parquet")
    b = pd.read_parquet(screened["tmp"] / "first" / "scores.parquet")
    assert np.allclose(a["d_ap"], b["d_ap"], atol=1e-6) and a["keep"].sum() == first.n_kept


def test_polars_reads_embeddings_as_an_array_column(screened):
    pl = pytest.importorskip("polars", reason="polars is a test extra (pip install polars)")
    df = pl.read_parquet(screened["out"] / "embeddings.parquet")
    assert df.schema["embedding"] == pl.Array(pl.Float32, 16)
    assert np.allclose(df["embedding"].to_numpy(), screened["emb"].astype(np.float32))


def test_duckdb_reads_embeddings_as_float_lists(screened):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is a test extra (pip install duckdb)")
    path = str(screened["out"] / "embeddings.parquet")
    con = duckdb.connect()
    kind = con.execute(f"select typeof(embedding) from read_parquet('{path}') limit 1").fetchone()[
        0
    ]
    assert kind == "FLOAT[]"  # DuckDB reads Parquet lists as lists; every one has 16 floats
    n, label, lengths = con.execute(
        f"select count(*), min(label), list(distinct len(embedding)) from read_parquet('{path}')"
    ).fetchone()
    assert n == len(screened["images"]) and label == "angry" and lengths == [16]
    fixed = con.execute(
        f"select embedding::FLOAT[16] from read_parquet('{path}') order by image_id"
    ).fetchall()
    assert np.allclose(np.array([r[0] for r in fixed]), screened["emb"].astype(np.float32))


def test_datasets_reads_embeddings_parquet(screened):
    datasets = pytest.importorskip(
        "datasets", reason="datasets is a test extra (pip install datasets)"
    )
    ds = datasets.Dataset.from_parquet(str(screened["out"] / "embeddings.parquet"))
    assert ds.features["embedding"].length == 16
    assert np.allclose(
        np.asarray(ds["embedding"], dtype=np.float32), screened["emb"].astype(np.float32)
    )


# ----------------------------------------------------------------------------- export --format hf
def test_export_hf_loads_back_with_datasets_and_carries_the_verdicts(screened):
    datasets = pytest.importorskip(
        "datasets", reason="datasets is a test extra (pip install datasets)"
    )
    out = screened["tmp"] / "hf"
    res = CliRunner().invoke(
        app, ["export", str(screened["out"]), "--out", str(out), "--format", "hf", "--copy"]
    )
    assert res.exit_code == 0, res.output
    assert "kept=True" in res.output
    suspect = pd.read_parquet(screened["out"] / "images_suspect.parquet").set_index("image_id")
    kept = set(
        export(screened["out"], screened["tmp"] / "plain", format="csv").manifest["image_id"]
    )

    for ds in (
        datasets.load_dataset("imagefolder", data_dir=str(out)),
        datasets.load_dataset(str(out)),
    ):
        assert list(ds) == ["train"]  # the build's split
        train = ds["train"]
        assert train.num_rows == len(suspect)
        assert {"image", "image_id", "label", "suspicion", "kept", "reasons"} <= set(
            train.column_names
        )
        assert train.features["kept"].dtype == "bool"
        rows = train.remove_columns("image").to_pandas().set_index("image_id").sort_index()
        assert set(rows.index[rows["kept"]]) == kept
        assert rows.loc[SIDE, "reasons"].tolist()[0] == "side_face" and not rows.loc[SIDE, "kept"]
        assert all(len(r) == 0 for r in rows.loc[rows["kept"], "reasons"])
        assert all(len(r) > 0 for r in rows.loc[~rows["kept"], "reasons"])
        high = rows.index[rows["reasons"].map(lambda r: "high_suspicion" in list(r))]
        assert (suspect.loc[high, "suspicion"] >= 0.5).all()
        assert np.allclose(rows["suspicion"], suspect.loc[rows.index, "suspicion"])
        assert (rows["label"] == suspect.loc[rows.index, "label"]).all()
        first = train[0]
        assert first["image"].size == (24, 24)


def test_export_hf_keeps_suggested_labels_when_a_screen_wrote_them(screened):
    table = pd.read_parquet(screened["out"] / "images_suspect.parquet")
    table["suggested_label"] = np.where(table["image_id"] == 5, "happy", None)
    table.to_parquet(screened["out"] / "images_suspect.parquet", index=False)
    export(screened["out"], screened["tmp"] / "hf", format="hf")
    meta = pd.read_parquet(screened["tmp"] / "hf" / "train" / "metadata.parquet").set_index(
        "image_id"
    )
    assert (
        meta.loc[5, "suggested_label"] == "happy"
        and meta["suggested_label"].isna().sum() == len(meta) - 1
    )
    assert (screened["tmp"] / "hf" / "README.md").read_text().startswith("---\nconfigs:")
    for name in meta["file_name"]:
        assert (screened["tmp"] / "hf" / "train" / Path(name)).exists()
