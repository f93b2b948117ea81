"""Atomic writes: an interrupted write leaves the old file and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from curate.io import write_json, write_parquet


def test_interrupted_parquet_write_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), target)
    before = target.read_bytes()

    def crash(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        write_parquet(pd.DataFrame({"a": [3]}), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_json_write_creates_folder(tmp_path: Path) -> None:
    p = write_json({"x": Path("/a"), "n": 1}, tmp_path / "deep" / "run.json")
    assert p.read_text().strip().startswith("{") and '"/a"' in p.read_text()
