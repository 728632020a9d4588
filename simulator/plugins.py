"""Loading the user's classes named in a strategy TOML.

A reference is `"package.module:Class"` (imported from the Python path) or `"file.py:Class"`
(a file relative to the strategy's TOML). `load_class` imports it and checks it against the
protocol of its stage (the methods and attributes the engine calls), once, at load; `build`
then calls it with the TOML's parameters, checked against its signature. Every error is one
ConfigError naming the TOML key it came from, e.g.
`policy.class 'policy.py:Joinn': policy.py has no class 'Joinn'; did you mean 'Join'?`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from simulator.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginSpec:
    """One plug-in as the TOML names it: `ref` and the keyword arguments it is built with.

    In TOML either a plain string `"file.py:Class"` or a table
    `{ class = "file.py:Class", param = value, ... }`."""

    ref: str
    params: Mapping[str, Any] = field(default_factory=dict)
    table: bool = False  # written as a table (kept so the resolved config reads as written)

    @classmethod
    def of(cls, raw: object, key: str) -> PluginSpec:
        if isinstance(raw, str):
            return cls(ref=raw)
        if isinstance(raw, Mapping) and isinstance(raw.get("class"), str):
            params = {k: v for k, v in raw.items() if k != "class"}
            return cls(ref=raw["class"], params=params, table=True)
        raise ConfigError(
            f'{key} must be "file.py:Class", "package.module:Class" or a table '
            f'{{ class = "...", parameter = value }}; found {raw!r}'
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """What a stage needs of a plug-in class: its name for messages, the methods the engine
    calls and the attributes it reads (on the class: a class attribute or a property)."""

    stage: str
    methods: Sequence[str] = ()
    attributes: Sequence[str] = ()

    def describe(self) -> str:
        wanted = [f"{m}()" for m in self.methods] + list(self.attributes)
        return f"a {self.stage} needs {', '.join(wanted)}"


def load_class(ref: str, *, key: str, base: Path, needs: Requirement) -> type[Any]:
    """The class `ref` names, checked against `needs`; `key` is the TOML key it came from and
    `base` the strategy's folder (where "file.py:Class" is looked up)."""
    where = f"{key} '{ref}'"
    module_part, sep, class_name = ref.rpartition(":")
    if not sep or not module_part or not class_name.isidentifier():
        raise ConfigError(
            f'{where}: expected "package.module:Class" or "file.py:Class" (relative to the '
            "strategy's TOML)"
        )
    module = _import(module_part, where, base)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        classes = [n for n, v in vars(module).items() if isinstance(v, type)]
        close = difflib.get_close_matches(class_name, classes, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        found = "is not a class" if cls is not None else "not found"
        raise ConfigError(f"{where}: class '{class_name}' {found} in {module_part}{hint}")
    _check(cls, where, needs)
    return cls


def _import(module_part: str, where: str, base: Path) -> ModuleType:
    if module_part.endswith(".py"):
        return _import_file(base / module_part, where)
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as e:
        raise ConfigError(f"{where}: no module named '{e.name}'") from e
    except Exception as e:
        raise ConfigError(f"{where}: importing {module_part} failed: {_cause(e)}") from e


def _import_file(path: Path, where: str) -> ModuleType:
    """Import a strategy's Python file under a name unique to its path and content (two
    strategies may both have a features.py), with its folder on sys.path while it runs (so
    it can import its siblings)."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{where}: file {path} not found")
    # keyed by path and content: an edited file (a notebook re-running) is imported afresh
    digest = hashlib.sha256(str(path).encode() + path.read_bytes()).hexdigest()[:12]
    name = f"ticktape_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ConfigError(f"{where}: importing {path.name} failed: {_cause(e)}") from e
    finally:
        sys.path.remove(str(path.parent))
    return module


def _cause(e: BaseException) -> str:
    """The error and the user's line it came from (the last frame of the traceback)."""
    frames = traceback.extract_tb(e.__traceback__)
    at = f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})" if frames else ""
    if isinstance(e, SyntaxError):
        at = f" ({Path(e.filename or '?').name} line {e.lineno})"
    return f"{type(e).__name__}: {e}{at}"


def _check(cls: type[Any], where: str, needs: Requirement) -> None:
    for method in needs.methods:
        if not callable(getattr(cls, method, None)):
            raise ConfigError(
                f"{where}: {cls.__name__} has no method {method}() ({needs.describe()})"
            )


def build(
    cls: type[Any], params: Mapping[str, Any], *, key: str, needs: Requirement | None = None
) -> Any:  # noqa: ANN401 - a user object of the stage's protocol
    """`cls(**params)`, with unknown or missing parameters named by their TOML key; then the
    attributes `needs` names are checked on the object (set in __init__ or on the class)."""
    instance = _call(cls, params, key)
    if needs is None:
        return instance
    for attribute in needs.attributes:
        if not hasattr(instance, attribute):
            raise ConfigError(
                f"{key}: {cls.__name__} has no attribute '{attribute}' ({needs.describe()})"
            )
    return instance


def _call(cls: type[Any], params: Mapping[str, Any], key: str) -> Any:  # noqa: ANN401
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        signature = None
    if signature is not None:
        _check_params(cls, signature, params, key)
    try:
        return cls(**params)
    except ConfigError as e:
        raise ConfigError(f"{key}: {e}") from e
    except Exception as e:
        raise ConfigError(f"{key}: {cls.__name__}(...) failed: {_cause(e)}") from e


def _check_params(
    cls: type[Any], signature: inspect.Signature, params: Mapping[str, Any], key: str
) -> None:
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        for name in params:
            if name not in accepted:
                close = difflib.get_close_matches(name, list(accepted), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                known = ", ".join(accepted) or "none"
                raise ConfigError(
                    f"{key}: {cls.__name__} takes no parameter '{name}'{hint} "
                    f"(its parameters: {known})"
                )
    for name, p in accepted.items():
        if p.default is p.empty and name not in params:
            raise ConfigError(f"{key}: {cls.__name__} needs parameter '{name}'; set {key}.{name}")
