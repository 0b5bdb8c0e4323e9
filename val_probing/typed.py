"""Settings read into a frozen dataclass, checked against its type hints: one wording for every loader.

    read_settings_into(Config, data, where="run.yaml", error=ConfigError)

* a key that is not a field is refused, with the closest field (``did you mean 'learning_rate'?``) or,
  when none is close, the known ones;
* a required field (no default) that is not given is named (``set dataset``);
* each value is checked against the field's hint: ``int`` (a bool is not an int), ``float`` (an int is
  taken, a bool is not), ``str``, ``bool``, ``X | None``, ``tuple[X, ...]`` / ``tuple[X, Y]`` /
  ``list[X]`` of those, ``Literal[...]``, ``Mapping[str, str]`` and a nested settings dataclass;
* ``numbers_from_strings``: a string where a number is wanted is read as one (PyYAML reads ``1e-6`` as a
  string);
* every error is the caller's ``ValProbingError`` subclass, naming ``where`` and the field (dotted for a
  nested one: ``run.yaml: corpus.max_texts: expected int, got 'ten'``; ``at`` names where ``data`` itself
  sits in its source). A ``ValueError`` from the dataclass's own ``__post_init__`` is raised as that
  error too, naming ``where``; a :class:`FieldError` names its field, and is reported at it
  (``baseline.yaml: statistics.alpha: expected a number with 0 < alpha < 1, got 2.0``).

Beside it, for loaders that read a mapping by hand: :func:`check_keys` (the same unknown-key message),
:func:`is_int` (an int that is not a bool), :func:`is_number` (an int or float that is not a bool).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from types import UnionType
from typing import Any, Literal, TypeGuard, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from val_probing.errors import ValProbingError

T = TypeVar("T")


def is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (``True`` is an ``int`` to Python, never to a setting)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float that is not a bool (NaN and infinities are numbers: the caller's rule)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class FieldError(ValueError):
    """A dataclass's own check of one of its fields (raise it in ``__post_init__``): its text is
    ``field: message``, and :func:`read_settings_into` reports it at that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def closest(key: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name closest to a misspelt ``key`` (difflib), None when none is close."""
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def describe(hint: Any) -> str:
    """A type hint in words, as the messages print it: ``int``, ``a list of float``, ``one of 'a', 'b'``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is UnionType:
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return f"one of {', '.join(map(repr, args))}"
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis]
        return f"a list of {' / '.join(dict.fromkeys(describe(a) for a in items))}" if items else "a list"
    if origin is Mapping or origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return str(getattr(hint, "__name__", hint))


def check_keys(
    data: Iterable[object],
    known: Iterable[str],
    *,
    where: str,
    error: type[ValProbingError],
    what: str = "setting",
    at: str = "",
) -> None:
    """Every key of ``data`` is one of ``known``; else ``error`` naming the first other one and the closest
    known name (``did you mean 'steps'?``) or, when none is close, the known ones."""
    names = list(known)
    for key in data:
        if key in names:
            continue
        close = closest(str(key), names)
        hint = f"did you mean {close!r}?" if close else f"known: {', '.join(names)}"
        message = f"unknown {what} {key!r} ({hint})"
        raise error(f"{where}: {at}: {message}" if at else f"{where}: {message}")


def read_settings_into(
    cls: type[T],
    data: object,
    *,
    where: str,
    error: type[ValProbingError],
    what: str = "setting",
    numbers_from_strings: bool = False,
    at: str = "",
) -> T:
    """``cls`` (a dataclass) built from the mapping ``data``, every key and value checked (module doc).

    ``where`` names the source in every message (a file, ``metadata``); ``what`` is the word for a key
    (``setting``, ``key``, ``option``); ``at`` the dotted name of ``data`` inside it (``statistics``),
    empty for the whole source."""
    return _Reader(where, error, what, numbers_from_strings).build(cls, data, at)


@dataclasses.dataclass(frozen=True)
class _Reader:
    where: str
    error: type[ValProbingError]
    what: str
    numbers_from_strings: bool

    def fail(self, field: str, message: str) -> ValProbingError:
        return self.error(f"{self.where}: {field}: {message}" if field else f"{self.where}: {message}")

    def build(self, cls: type[T], data: object, at: str) -> T:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"read_settings_into: {cls!r} is not a dataclass")
        if not isinstance(data, Mapping):
            raise self.fail(at, f"expected a mapping, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        check_keys(data, known, where=self.where, error=self.error, what=self.what, at=at)
        missing = [
            name
            for name, f in known.items()
            if name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise self.fail(at, f"set {', '.join(missing)}")
        hints = get_type_hints(cls)
        kwargs = {
            key: self.value(value, hints[key], f"{at}.{key}" if at else str(key))
            for key, value in data.items()
        }
        try:
            return cls(**kwargs)
        except FieldError as err:
            raise self.fail(f"{at}.{err.field}" if at else err.field, err.message) from err
        except ValueError as err:
            raise self.fail(at, str(err)) from err

    def value(self, value: Any, hint: Any, at: str) -> Any:
        """``value`` checked against ``hint`` (converted where the module doc says so)."""
        if hint is Any:
            return value
        origin, args = get_origin(hint), get_args(hint)
        if origin is Union or origin is UnionType:
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(value, options[0], at)
            for option in options:  # X | Y: the first that takes the value
                try:
                    return self.value(value, option, at)
                except ValProbingError:
                    continue
            raise self.fail(at, f"expected {describe(hint)}, got {value!r}")
        if value is None:
            raise self.fail(at, "must be set")
        if dataclasses.is_dataclass(hint):
            return self.build(cast(type, hint), value, at)
        if origin is Literal:
            if any(value == a and type(value) is type(a) for a in args):
                return value
            raise self.fail(at, f"expected {describe(hint)}, got {value!r}")
        if origin in (tuple, list):
            return self.sequence(value, hint, origin, args, at)
        if origin is Mapping or origin is dict:
            if not isinstance(value, Mapping):
                raise self.fail(at, f"expected a mapping, got {value!r}")
            key_hint, value_hint = args or (str, str)
            return {
                self.value(k, key_hint, at): self.value(v, value_hint, f"{at}.{k}") for k, v in value.items()
            }
        return self.scalar(value, hint, at)

    def sequence(self, value: Any, hint: Any, origin: Any, args: tuple[Any, ...], at: str) -> Any:
        if not isinstance(value, list | tuple):
            raise self.fail(at, f"expected {describe(hint)}, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[X, Y]: fixed length
            if len(value) != len(args):
                raise self.fail(at, f"expected {describe(hint)} of {len(args)} items, got {value!r}")
            items = list(args)
        else:
            items = [args[0] if args else Any] * len(value)
        try:
            out = [self.value(v, item, at) for v, item in zip(value, items, strict=True)]
        except ValProbingError as err:
            raise self.fail(at, f"expected {describe(hint)}, got {value!r}") from err
        return tuple(out) if origin is tuple else out

    def scalar(self, value: Any, hint: Any, at: str) -> Any:
        if isinstance(value, str) and self.numbers_from_strings and hint in (int, float):
            try:
                return hint(value)
            except ValueError:
                pass
        if hint is float and is_number(value):
            return float(value)
        if hint is int and is_int(value):
            return value
        if hint in (str, bool) and isinstance(value, hint):
            return value
        if hint not in (int, float, str, bool):
            raise TypeError(f"read_settings_into: no rule for the type {hint!r} (at {at})")
        raise self.fail(at, f"expected {describe(hint)}, got {value!r}")
