"""The condition registry: built-ins by name, run-time registrations, and third-party entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import controlkit.conditions as registry
from controlkit.conditions import Condition
from controlkit.errors import UserError
from data_conditions import Brightness


def test_builtins_are_found_and_follow_the_protocol():
    assert {"canny", "face-landmarks"} <= set(registry.available())
    assert isinstance(registry.get("canny"), Condition)
    assert isinstance(registry.get("face-landmarks"), Condition)


def test_a_plugin_registered_through_the_entry_point_group_is_found(monkeypatch):
    plugin = EntryPoint(
        name="brightness", value="data_conditions:Brightness", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin] if group == plugin.group else [])
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    assert "brightness" in registry.available()
    condition = registry.get("brightness", scale=0.5)
    assert isinstance(condition, Brightness) and condition.scale == 0.5
    assert isinstance(condition, Condition)


def test_unknown_names_list_what_is_available(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    with pytest.raises(UserError, match="available: .*canny.*face-landmarks"):
        registry.get("depth")


def test_options_a_condition_does_not_take_are_one_clear_error():
    with pytest.raises(
        UserError, match=r"condition 'canny' does not take .*'foo'.*its options: .*low_threshold"
    ):
        registry.get("canny", foo=1)
    assert registry.get("canny", low_threshold=50).low_threshold == 50


def test_a_bad_option_value_is_one_line_error():
    with pytest.raises(UserError, match="bad option value"):
        registry.get("canny", low_threshold="abc")


def test_a_plugin_that_does_not_subclass_condition_is_adopted_with_its_own_words(monkeypatch):
    """An object following the interface keeps its name, message and description, gets the base class's
    defaults for the rest, and copies and pickles like any condition."""
    import copy
    import pickle

    from data_conditions import PlainSquare

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    registry.register("plain-square")(PlainSquare)
    condition = registry.get("plain-square")
    assert isinstance(condition, Condition) and not isinstance(condition, PlainSquare)
    assert condition.name == "plain-square" and condition.nothing_found == "no square here"
    assert condition.describe() == {"detector": "PlainSquare", "detector_version": "unknown"}
    assert condition.score_labels == {} and condition.for_resolution(64) is condition
    assert copy.copy(condition).name == "plain-square"
    assert pickle.loads(pickle.dumps(condition)).nothing_found == "no square here"
    with pytest.raises(UserError, match="made a int, which has no annotate"):
        registry.as_condition(3, "three")
