"""The typed-settings helper: a mapping read into a frozen dataclass, every key and value checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from val_probing.errors import ValProbingError
from val_probing.typed import (
    FieldError,
    check_keys,
    closest,
    describe,
    is_int,
    is_number,
    read_settings_into,
)


class SettingsError(ValProbingError):
    pass


@dataclass(frozen=True)
class Inner:
    max_texts: int | None = None
    span: tuple[int, int] = (2, 4)


@dataclass(frozen=True)
class Settings:
    dataset: str
    steps: int = 1
    rate: float = 0.5
    bf16: bool = False
    mode: Literal["hf", "vllm"] = "hf"
    effects: tuple[float, ...] = (5.0,)
    names: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps: expected >= 0, got {self.steps}")


def read(data: object, **kwargs: bool) -> Settings:
    return read_settings_into(Settings, data, where="run.yaml", error=SettingsError, **kwargs)


def test_reads_every_kind_of_field() -> None:
    got = read(
        {
            "dataset": "d",
            "steps": 3,
            "rate": 2,
            "bf16": True,
            "mode": "vllm",
            "effects": [1, 2.5],
            "names": ["a"],
            "env": {"K": "v"},
            "inner": {"max_texts": None, "span": [1, 3]},
        }
    )
    assert got == Settings("d", 3, 2.0, True, "vllm", (1.0, 2.5), ["a"], {"K": "v"}, Inner(None, (1, 3)))
    assert (
        isinstance(got.rate, float) and isinstance(got.effects, tuple) and isinstance(got.inner.span, tuple)
    )
    assert read({"dataset": "d"}) == Settings("d")  # defaults kept


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataset": "d", "stpes": 2}, "run.yaml: unknown setting 'stpes' (did you mean 'steps'?)"),
        ({"dataset": "d", "zzz": 2}, "run.yaml: unknown setting 'zzz' (known: dataset, steps, rate,"),
        ({"steps": 2}, "run.yaml: set dataset"),
        ({"dataset": "d", "steps": True}, "run.yaml: steps: expected int, got True"),
        ({"dataset": "d", "steps": 2.0}, "run.yaml: steps: expected int, got 2.0"),
        ({"dataset": "d", "rate": False}, "run.yaml: rate: expected float, got False"),
        ({"dataset": "d", "rate": "fast"}, "run.yaml: rate: expected float, got 'fast'"),
        ({"dataset": 3}, "run.yaml: dataset: expected str, got 3"),
        ({"dataset": "d", "bf16": 1}, "run.yaml: bf16: expected bool, got 1"),
        ({"dataset": "d", "mode": "vlm"}, "run.yaml: mode: expected one of 'hf', 'vllm', got 'vlm'"),
        ({"dataset": "d", "mode": None}, "run.yaml: mode: must be set"),
        ({"dataset": "d", "effects": [5, "x"]}, "run.yaml: effects: expected a list of float, got [5, 'x']"),
        ({"dataset": "d", "effects": 5}, "run.yaml: effects: expected a list of float, got 5"),
        ({"dataset": "d", "env": ["a"]}, "run.yaml: env: expected a mapping, got ['a']"),
        (
            {"dataset": "d", "inner": {"max_texts": "ten"}},
            "run.yaml: inner.max_texts: expected int, got 'ten'",
        ),
        ({"dataset": "d", "inner": {"span": [1, 2, 3]}}, "run.yaml: inner.span: expected a list of int of 2"),
        (
            {"dataset": "d", "inner": {"max_txts": 1}},
            "run.yaml: inner: unknown setting 'max_txts' (did you mean",
        ),
        ({"dataset": "d", "inner": 3}, "run.yaml: inner: expected a mapping, got int"),
        (
            {"dataset": "d", "steps": -1},
            "run.yaml: steps: expected >= 0, got -1",
        ),  # __post_init__'s ValueError
        (["dataset"], "run.yaml: expected a mapping, got list"),
    ],
)
def test_refuses_naming_where_and_the_field(data: object, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        read(data)
    assert message in str(err.value)


def test_numbers_from_strings_only_when_asked() -> None:
    data = {"dataset": "d", "steps": "4", "rate": "1e-6"}
    got = read(data, numbers_from_strings=True)
    assert (got.steps, got.rate) == (4, 1e-6)
    with pytest.raises(SettingsError, match="steps: expected int, got '4'"):
        read(data)
    with pytest.raises(SettingsError, match="steps: expected int, got 'four'"):
        read({"dataset": "d", "steps": "four"}, numbers_from_strings=True)
    assert read({"dataset": "12"}, numbers_from_strings=True).dataset == "12"  # a str field stays a str


def test_the_caller_names_the_word_for_a_key() -> None:
    with pytest.raises(SettingsError, match=r"^cfg: unknown key 'stepz' \(did you mean 'steps'\?\)$"):
        read_settings_into(
            Settings, {"dataset": "d", "stepz": 1}, where="cfg", error=SettingsError, what="key"
        )


def test_small_helpers() -> None:
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_number(3) and is_number(2.5) and not is_number(False) and not is_number("3")
    assert closest("contxt_length", ["context_length", "sets"]) == "context_length"
    assert closest("dtype", ["context_length", "sets"]) is None
    assert describe(int | None) == "int" and describe(Literal["a", "b"]) == "one of 'a', 'b'"
    with pytest.raises(TypeError, match="not a dataclass"):
        read_settings_into(dict, {}, where="x", error=SettingsError)


@dataclass(frozen=True)
class Checked:
    alpha: float = 0.05
    extra: Any = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise FieldError("alpha", f"expected 0 < alpha < 1, got {self.alpha!r}")


@dataclass(frozen=True)
class Outer:
    statistics: Checked = field(default_factory=Checked)


def test_a_field_error_is_reported_at_its_field_and_at_names_the_data() -> None:
    with pytest.raises(
        SettingsError, match=r"^b\.yaml: statistics\.alpha: expected 0 < alpha < 1, got 2\.0$"
    ):
        read_settings_into(Outer, {"statistics": {"alpha": 2}}, where="b.yaml", error=SettingsError)
    with pytest.raises(SettingsError, match=r"^b\.yaml: alpha: expected 0 < alpha < 1"):
        read_settings_into(Checked, {"alpha": 2}, where="b.yaml", error=SettingsError)
    with pytest.raises(SettingsError, match=r"^b\.yaml: statistics\.alpha: expected float, got 'x'$"):
        read_settings_into(Checked, {"alpha": "x"}, where="b.yaml", error=SettingsError, at="statistics")
    assert str(FieldError("alpha", "bad")) == "alpha: bad"  # a plain ValueError's text for other callers
    # Any takes anything, None included
    assert read_settings_into(Checked, {"extra": None}, where="b", error=SettingsError).extra is None


def test_check_keys_words_an_unknown_key_as_the_reader_does() -> None:
    check_keys({"steps": 1}, ["steps"], where="cfg", error=SettingsError)
    with pytest.raises(SettingsError, match=r"^cfg: tasks: unknown key 'cdoe' \(did you mean 'code'\?\)$"):
        check_keys(
            {"cdoe": 1}, ["code", "document"], where="cfg", error=SettingsError, what="key", at="tasks"
        )
    with pytest.raises(SettingsError, match=r"^cfg: unknown setting 'zz' \(known: code, document\)$"):
        check_keys(["zz"], ["code", "document"], where="cfg", error=SettingsError)
