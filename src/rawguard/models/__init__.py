"""Model registry: ``create_model("rawnet-lite", gru_hidden=96)``.

Every architecture lives in its own module in this package, with a config dataclass, and registers
itself with :func:`register_model`. Modules here are discovered automatically, so adding an
architecture is adding one file. Every registered model:

- takes ``[B, T]`` float32 waveforms in [-1, 1] at 16 kHz, any ``T >= model.min_samples``;
- returns ``[B, 2]`` logits, index :data:`rawguard.conventions.BONAFIDE` (1) = bona fide;
- has ``.config`` (its dataclass instance; ``dataclasses.asdict(model.config)`` rebuilds it through
  ``create_model(name, **that_dict)``) and ``.min_samples``.

See ``docs/models.md`` for the architectures, shapes, parameter counts and costs.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
import typing
from typing import Any, Callable

from torch import nn

# Modules in this package that hold shared pieces, not architectures.
_HELPER_MODULES = {"sinc", "layers"}


class ModelConfigError(ValueError):
    """Unknown model name, unknown config key, or a config value of the wrong type or range."""


_REGISTRY: dict[str, tuple[type, type]] = {}  # name -> (model class, config dataclass)
_discovered = False


def register_model(name: str, config_cls: type) -> Callable[[type], type]:
    """Class decorator that registers a model under ``name`` with its config dataclass.

    The model class must accept a single ``config`` argument (an instance of ``config_cls``).

    Example::

        @register_model("my-net", MyNetConfig)
        class MyNet(nn.Module):
            def __init__(self, config: MyNetConfig): ...
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"register_model({name!r}): config_cls must be a dataclass, got {config_cls!r}")

    def decorator(model_cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name][0] is not model_cls:
            raise ModelConfigError(f"model name {name!r} is already registered by {_REGISTRY[name][0].__name__}")
        _REGISTRY[name] = (model_cls, config_cls)
        return model_cls

    return decorator


def _discover() -> None:
    """Import every architecture module of this package once, so that each registers itself."""
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _HELPER_MODULES:
            importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _discover()
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[type, type]:
    _discover()
    if name not in _REGISTRY:
        raise ModelConfigError(f"unknown model {name!r}; available models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_config_class(name: str) -> type:
    """The config dataclass of model ``name`` (so a config system can validate ``model.*`` keys)."""
    return _lookup(name)[1]


def _coerce(model: str, key: str, expected: Any, value: Any) -> Any:
    """Return ``value`` checked against type ``expected``; raise ModelConfigError naming the key."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return _coerce(model, key, option, value)
            except ModelConfigError:
                continue
        raise ModelConfigError(f"{model}: config key {key!r}: {value!r} does not match {expected}")
    if expected is type(None):
        if value is None:
            return None
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            args = typing.get_args(expected)
            item_type = args[0] if args else Any
            return tuple(value if item_type is Any else (_coerce(model, key, item_type, v) for v in value))
    elif origin is typing.Literal:
        if value in typing.get_args(expected):
            return value
        raise ModelConfigError(
            f"{model}: config key {key!r} must be one of {list(typing.get_args(expected))}, got {value!r}"
        )
    elif expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ModelConfigError(f"{model}: config key {key!r} expects {getattr(expected, '__name__', expected)}, got {value!r}")


def build_config(name: str, **overrides: Any) -> Any:
    """The config dataclass of model ``name`` with ``overrides`` applied and type-checked.

    Raises:
        ModelConfigError: unknown model, unknown key (the message lists the valid keys), wrong type,
            or a value the config's own validation rejects.
    """
    config_cls = get_config_class(name)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ModelConfigError(
            f"unknown config key(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(config_cls)
    checked = {key: _coerce(name, key, hints[key], value) for key, value in overrides.items()}
    try:
        return config_cls(**checked)
    except (ValueError, TypeError) as error:
        raise ModelConfigError(f"{name}: {error}") from error


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build model ``name`` with its default config, changed by ``overrides``.

    Args:
        name: a registered name (see :func:`list_models`), e.g. ``"rawnet-lite"`` or ``"rawnet2"``.
        **overrides: config fields to change, e.g. ``gru_hidden=96``.

    Returns:
        The model (in training mode) with ``.config``, ``.min_samples``; ``[B, T]`` -> ``[B, 2]``.

    Raises:
        ModelConfigError: unknown name, unknown key, bad value.
    """
    model_cls, _ = _lookup(name)
    return model_cls(build_config(name, **overrides))


def create_model_from_saved(name: str, saved_config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the config dict a checkpoint stored (``dataclasses.asdict``).

    A field the saved config lacks was added to the model after that checkpoint was written; it
    takes the value listed in the config class's ``LEGACY_DEFAULTS`` (the behaviour before the
    field existed), not today's default, so older checkpoints keep loading.
    """
    _, config_cls = _lookup(name)
    saved_config = without_removed_fields(name, saved_config)
    legacy = {key: value for key, value in getattr(config_cls, "LEGACY_DEFAULTS", {}).items() if key not in saved_config}
    return create_model(name, **{**legacy, **saved_config})


def without_removed_fields(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` without the fields model ``name`` no longer has, if they were off.

    A config class lists removed fields and the value that meant "off" in ``REMOVED_FIELDS``
    (options that did not help, BENCHMARKS.md "What did not help"). A checkpoint that stored such
    a field at that value describes a model today's code builds identically, so the field is
    dropped; any other value describes a model that can no longer be built.

    Raises:
        ModelConfigError: a removed field with a value other than its "off" value, naming it.
    """
    removed = getattr(get_config_class(name), "REMOVED_FIELDS", {})
    for key in set(overrides) & set(removed):
        value = tuple(overrides[key]) if isinstance(overrides[key], list) else overrides[key]  # YAML gives lists
        if value != removed[key]:
            raise ModelConfigError(
                f"{name}: config key {key!r} was removed (it did not help; see BENCHMARKS.md, \"What did not "
                f"help\"), so a model with {key}={overrides[key]!r} cannot be built; only {removed[key]!r} is accepted"
            )
    return {key: value for key, value in overrides.items() if key not in removed}


__all__ = [
    "ModelConfigError",
    "build_config",
    "create_model",
    "create_model_from_saved",
    "get_config_class",
    "list_models",
    "register_model",
    "without_removed_fields",
]
