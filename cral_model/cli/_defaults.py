"""Defaults for the command lines, read from where they are defined (dataclass fields, function keywords).

A flag's default or its ``[default]`` in the help is never typed a second time, so a changed default in
`cral_model.train_config.TrainConfig`, `cral_model.config.ModelConfig` / `PreprocessConfig` or a
function's signature cannot leave a command line or its help behind. Torch-free.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import DataclassInstance

__all__ = ["default_help", "field_default", "format_default", "param_default"]


def field_default(cls: type[DataclassInstance], name: str) -> Any:
    """The default of dataclass field ``name`` of ``cls`` (calling its ``default_factory`` if it has one).

    Raises:
        KeyError: ``cls`` has no field ``name``.
        TypeError: the field has no default.
    """
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def param_default(func: Callable[..., Any], name: str) -> Any:
    """The default of keyword ``name`` of ``func``.

    Raises:
        KeyError: ``func`` has no parameter ``name``.
        TypeError: the parameter has no default.
    """
    params = inspect.signature(func).parameters
    if name not in params:
        raise KeyError(f"{func.__qualname__} has no parameter {name!r}")
    default = params[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{func.__qualname__}({name}) has no default")
    return default


def format_default(value: Any) -> str:
    """A default as the help shows it: booleans ``on``/``off``, floats ``%g``, sequences space-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(format_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"  # 1.0 -> 1, 1e-4 -> 0.0001
    return str(value)


def default_help(
    cls: type[DataclassInstance],
    name: str,
    text: str = "",
    *,
    none: str | None = None,
    zero: str | None = None,
) -> str:
    """``text`` followed by the default of ``cls.name`` in brackets, e.g. ``"network input side [224]"``.

    Args:
        cls: the dataclass that holds the default.
        name: its field.
        text: what the option does (may be empty: the help is then just ``[default]``).
        none: what a default of ``None`` means (``"torch default"``); required when the default is None.
        zero: what a default of 0 means (``"off"`` shows as ``[0: off]``).

    Raises:
        ValueError: the default is None and ``none`` was not given.
    """
    value = field_default(cls, name)
    if value is None:
        if none is None:
            raise ValueError(f"{cls.__name__}.{name} defaults to None: say what that means (none=...)")
        shown = none
    elif zero is not None and not isinstance(value, bool) and value == 0:
        shown = f"{format_default(value)}: {zero}"
    else:
        shown = format_default(value)
    return f"{text} [{shown}]" if text else f"[{shown}]"
