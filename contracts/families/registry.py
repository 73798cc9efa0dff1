"""The model families known to this process: the shipped ones, those installed as plugins (entry
point group `dcai.models`) and any registered at run time with `register`.

Lookups accept a family's canonical name (`model.type` in scenarios), one of its declared aliases,
or its contract name (a deployed system knows only that); nothing else maps spellings. Plugins are
loaded once, on the first lookup, so importing this module costs nothing.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from .base import ModelFamily

ENTRY_POINT_GROUP = "dcai.models"
# The shipped families, one module each; a module exposes its family as `FAMILY`.
BUILTIN_MODULES = (
    "contracts.families.sparse_perceptron",
    "contracts.families.dense_perceptron",
    "contracts.families.naive_bayes",
    "contracts.families.dense_nearest_centroid",
    "contracts.families.sparse_nearest_centroid",
)


class UnknownModelFamily(ValueError):
    pass


class ModelPluginError(ValueError):
    """A `dcai.models` plugin failed to load; the message is one line naming it. A ValueError, so
    scenario validation reports it at `model.type` like any other bad value."""


_families: dict[str, ModelFamily] = {}
_loaded = False
_plugin_error: ModelPluginError | None = None  # raised on every lookup: a broken plugin never goes unnoticed


def register(family: ModelFamily | type[ModelFamily], *, replace: bool = False) -> ModelFamily:
    """Add a family (an instance, or a subclass to instantiate). A second family under a taken name
    or alias is refused unless `replace`."""
    if isinstance(family, type):
        family = family()
    if not isinstance(family, ModelFamily):
        raise TypeError(f"a model family must be a ModelFamily, got {type(family).__name__}")
    _ensure_loaded()
    _add(family, replace)
    return family


def unregister(name: str) -> None:
    _families.pop(name, None)


def reset() -> None:
    """Forget every family: the next lookup loads the shipped ones and the installed plugins again
    (after installing a plugin in a running process; tests)."""
    global _loaded, _plugin_error
    _families.clear()
    _loaded, _plugin_error = False, None


def _add(family: ModelFamily, replace: bool) -> None:
    for taken in _families.values():
        if taken.name == family.name:
            continue
        clash = {family.name, *family.aliases} & {taken.name, *taken.aliases}
        if clash and not replace:
            raise ValueError(f"model family {family.name!r}: {sorted(clash)[0]!r} is already {taken.name!r}'s")
    if family.name in _families and not replace:
        raise ValueError(f"model family {family.name!r} is already registered")
    _families[family.name] = family


def _ensure_loaded() -> None:
    global _loaded, _plugin_error
    if _plugin_error is not None:
        raise _plugin_error
    if _loaded:
        return
    _loaded = True  # set first: a plugin that imports the registry must not re-enter
    for module in BUILTIN_MODULES:
        _add(importlib.import_module(module).FAMILY, False)
    # Sorted: the same plugins register in the same order on every machine.
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            loaded = ep.load()
            family = loaded() if isinstance(loaded, type) else loaded
            if not isinstance(family, ModelFamily):
                raise TypeError(f"{ep.value} is a {type(family).__name__}, not a ModelFamily")
            _add(family, False)
        except Exception as e:  # noqa: BLE001 - any failure of foreign code becomes one line
            problem = " ".join(str(e).split())[:200]
            _plugin_error = ModelPluginError(
                f"model family plugin {ep.name!r} ({ep.value}): {type(e).__name__}: {problem}")
            raise _plugin_error from None


def families() -> tuple[ModelFamily, ...]:
    _ensure_loaded()
    return tuple(_families.values())


def names() -> tuple[str, ...]:
    """Canonical names, shipped families first."""
    return tuple(f.name for f in families())


def resolve(name: str) -> str:
    """The canonical name of a family given by name or alias; UnknownModelFamily with suggestions."""
    return get(name).name


def get(name: str) -> ModelFamily:
    """The family called `name` (canonical name, alias or contract name)."""
    _ensure_loaded()
    if name in _families:
        return _families[name]
    for f in _families.values():
        if name in f.aliases:
            return f
    for f in _families.values():
        if name == f.contract:
            return f
    close = difflib.get_close_matches(str(name), list(_families), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownModelFamily(f"unknown model type {name!r}{hint}; known: {', '.join(map(repr, _families))}")


def by_contract(contract: str) -> ModelFamily:
    """The first family registered for a model contract (shipped families come first)."""
    _ensure_loaded()
    for f in _families.values():
        if f.contract == contract:
            return f
    raise UnknownModelFamily(f"no model family for contract {contract!r}; "
                             f"known: {', '.join(sorted({f.contract for f in _families.values()}))}")


def by_file_type(kind: str) -> ModelFamily | None:
    """The family whose model files say `"type": kind` (case and spacing as the reference's loosely)."""
    wanted = " ".join(kind.strip().lower().split())
    for f in families():
        if wanted in f.file_types:
            return f
    return None


def contracts() -> tuple[str, ...]:
    return tuple(dict.fromkeys(f.contract for f in families()))
