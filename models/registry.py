"""The model registry: ``@register_model(name)`` on factory functions, one constructor ``create_model``.

A factory takes config overrides (fields of the model's config dataclass) and returns a ``VidModel``; tests
parametrise over ``list_models()`` so a model is tested the day it is registered (timm's pattern). The model
modules register themselves when ``models`` is imported.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from models.base import VidModel

__all__ = ["create_model", "list_models", "register_model"]

_Factory = TypeVar("_Factory", bound=Callable[..., VidModel])
_REGISTRY: dict[str, Callable[..., VidModel]] = {}


def register_model(name: str) -> Callable[[_Factory], _Factory]:
    """Decorator registering ``fn(**overrides) -> VidModel`` under ``name`` (a duplicate name is an error)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"name={name!r}; expected a non-empty str")

    def deco(fn: _Factory) -> _Factory:
        old = _REGISTRY.get(name)
        same_source = old is not None and (old.__module__, old.__qualname__) == (fn.__module__, fn.__qualname__)
        if old is not None and old is not fn and not same_source:  # same source = a module reload, allowed
            raise ValueError(f"model name {name!r} is already registered (by {old.__module__}.{old.__qualname__})")
        _REGISTRY[name] = fn
        return fn

    return deco


def create_model(name: str, **overrides: Any) -> VidModel:
    """Build the registered model ``name`` with config ``overrides``; unknown names or fields raise ValueError."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"model={name!r} is not registered; expected one of {list_models()}") from None
    model = factory(**overrides)
    model.model_name = name
    return model


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)
