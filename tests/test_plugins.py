"""Screens and representations from other packages arrive through entry points
(``curate.plugins.load_entry_points``): a good class is registered, anything else is a
clear error naming the entry point."""

from __future__ import annotations

from importlib import metadata

import pytest

from curate import plugins, representations, screens
from curate.errors import CurateError


class _EntryPoint:
    def __init__(self, name: str, obj: object) -> None:
        self.name, self.value, self._obj = name, f"pkg:{name}", obj

    def load(self) -> object:
        return self._obj


def _fake_entry_points(monkeypatch, group: str, *eps: _EntryPoint) -> None:
    real = metadata.entry_points
    wanted = group
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda group=None, **kw: list(eps) if group == wanted else real(group=group, **kw))


def test_a_plug_in_representation_is_registered_from_its_entry_point(monkeypatch):
    from curate.representations.base import Representation

    class Mine(Representation):
        name = "mine_for_test"
        summary = "a plug-in"
        needs_faces = False

        def compute(self, ctx):  # pragma: no cover - never run here
            raise NotImplementedError

    _fake_entry_points(monkeypatch, representations.ENTRY_POINT_GROUP, _EntryPoint("mine", Mine))
    monkeypatch.setattr(representations, "_PLUGINS_LOADED", False)
    try:
        assert "mine_for_test" in representations.choices()
    finally:
        representations.unregister("mine_for_test")


@pytest.mark.parametrize("module", [screens, representations], ids=["screens", "representations"])
def test_an_entry_point_that_is_not_a_plug_in_class_is_a_clear_error(monkeypatch, module):
    _fake_entry_points(monkeypatch, module.ENTRY_POINT_GROUP, _EntryPoint("oops", len))
    monkeypatch.setattr(module, "_PLUGINS_LOADED", False)
    with pytest.raises(CurateError, match=r"entry point oops = pkg:oops of group curate\.\w+ is not a curate"):
        module._load_plugins()
