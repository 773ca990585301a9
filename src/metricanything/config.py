"""Strict configuration, shared by every config-like file of metricanything.

**One validator.** :func:`from_mapping` turns a mapping (read from YAML or JSON) into a dataclass: nested
dataclasses, ``Literal`` choices, lists, tuples (fixed or variable length), optionals and unions,
``dict[str, X]``. An int is accepted where a float is expected; nothing else is coerced. An unknown key, a
missing required key or a value of the wrong type raises :class:`~metricanything.errors.ConfigError` (or the
caller's error class) naming the file and the dotted key (``data.sources.0.weight``), with the closest valid
key. Training configs (:mod:`metricanything.train.config`), the model configs inside checkpoint
``config.json`` files and benchmark definitions are all read through it.

**Overrides are mappings**, not text: dotted keys to values (``{"train.steps": 2}``) or nested sections
(``{"train": {"steps": 2}}``), applied in order by :func:`apply_overrides` against the dataclass schema. The
command line's ``--set a.b=c`` strings are parsed into that form by :func:`parse_set` (values are YAML:
``3`` is an int, ``1e-4`` a float, ``[64, 64]`` a list, ``null`` None) and written back by
:func:`format_set`.

**Shipped configs live inside the package**: ``metricanything/configs/<name>.yaml`` (training presets) and
``metricanything/configs/benchmarks/<name>.yaml`` (benchmark definitions). :func:`find_config` finds them
with :mod:`importlib.resources`, so they are there for an installed wheel exactly as for a source checkout;
it also accepts any path to a YAML file.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import json
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from metricanything.errors import ConfigError

T = TypeVar("T")

#: Where the shipped configs live: ``<package>/configs`` (benchmarks in its ``benchmarks`` sub-folder).
CONFIG_PACKAGE = "metricanything"
CONFIG_FOLDER = "configs"

UnknownHint = Callable[[str], "str | None"]


# ---------------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 and people do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text safely (plain data only); ``1e-4`` is a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | os.PathLike, *, error: type[Exception] = ConfigError, what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: ``{}``); problems raise ``error`` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {what} file not found")
    try:
        data = yaml_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise error(f"{p}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def _join(prefix: str, name: str | int) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _strip_optional(tp: Any) -> Any:
    """``X | None`` -> ``X`` (other unions are returned unchanged)."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_sequence_type(tp: Any) -> bool:
    origin = get_origin(tp)
    return origin in (list, tuple, Sequence) or tp in (list, tuple)


def _is_mapping_type(tp: Any) -> bool:
    return get_origin(tp) in (dict, Mapping) or tp is dict


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


class _Validator:
    def __init__(self, origin: str, error: type[Exception], unknown_hint: UnknownHint | None) -> None:
        self.origin = origin
        self.error = error
        self.unknown_hint = unknown_hint

    def fail(self, key: str, message: str) -> Exception:
        parts = [p for p in (self.origin, key) if p]
        return self.error(": ".join([*parts, message]))

    # -- dataclasses
    def dataclass(self, cls: type[T], data: Any, key: str) -> T:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise self.fail(key, f"expected a mapping of {cls.__name__} settings, got {_describe(data)}")
        fields = _init_fields(cls)
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise self.fail(key, f"keys must be strings, got {bad[0]!r}")
        unknown = [k for k in data if k not in fields]
        if unknown:
            valid = f"valid keys{' in ' + key if key else ''}: {', '.join(sorted(fields))}"
            raise self.fail("", "; ".join([*(self.unknown(cls, key, k, listing=False) for k in unknown), valid]))
        missing = [n for n, f in fields.items() if n not in data and _field_default(f) is dataclasses.MISSING]
        if missing:
            raise self.fail(_join(key, missing[0]), "required key is missing")
        hints = _hints(cls)
        kwargs = {name: self.value(hints[name], value, _join(key, name)) for name, value in data.items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # __post_init__ checks (ConfigError is a ValueError)
            raise self.fail(key, str(exc)) from exc

    def unknown(self, cls: type, prefix: str, name: str, listing: bool = True) -> str:
        dotted = _join(prefix, name)
        valid = sorted(_init_fields(cls))
        text = f"{dotted}: unknown key"
        hint = self.unknown_hint(dotted) if self.unknown_hint is not None else None
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        if hint:
            text += f"; {hint}"
        elif close:
            text += f" (did you mean {_join(prefix, close[0])!r}?)"
        return text + (f"; valid keys{' in ' + prefix if prefix else ''}: {', '.join(valid)}" if listing else "")

    # -- values
    def value(self, tp: Any, value: Any, key: str) -> Any:
        if tp is Any:
            return value
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            return self.union(tp, value, key)
        if origin is Literal:
            choices = get_args(tp)
            if not any(value == c and type(value) is type(c) for c in choices):
                raise self.fail(key, f"must be one of {list(choices)}, got {value!r}")
            return value
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, key)
        if _is_sequence_type(tp):
            return self.sequence(tp, value, key)
        if _is_mapping_type(tp):
            if not isinstance(value, Mapping):
                raise self.fail(key, f"expected a mapping, got {_describe(value)}")
            args = get_args(tp)
            vt = args[1] if len(args) == 2 else Any
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise self.fail(key, f"keys must be strings, got {k!r}")
                out[k] = self.value(vt, v, _join(key, k))
            return out
        if tp is bool:
            if not isinstance(value, bool):
                raise self.fail(key, f"expected true/false, got {_describe(value)}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(key, f"expected an integer, got {_describe(value)}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(key, f"expected a number, got {_describe(value)}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise self.fail(key, f"expected a string, got {_describe(value)}")
            return value
        if tp is type(None):
            if value is not None:
                raise self.fail(key, f"expected null, got {_describe(value)}")
            return None
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        raise self.fail(key, f"unsupported field type {_type_name(tp)}")

    def sequence(self, tp: Any, value: Any, key: str) -> Any:
        if not isinstance(value, (list, tuple)):
            raise self.fail(key, f"expected a list, got {_describe(value)}")
        origin = get_origin(tp) or tp
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise self.fail(key, f"expected {len(args)} values, got {len(value)}")
            return tuple(self.value(a, v, _join(key, i)) for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [self.value(item, v, _join(key, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items

    def union(self, tp: Any, value: Any, key: str) -> Any:
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise self.fail(key, f"expected {_type_name(tp)}, got null")
        options = [a for a in args if a is not type(None)]
        # the arm the value's shape selects reports its own (nested) errors
        if isinstance(value, Mapping):
            shaped = [a for a in options if dataclasses.is_dataclass(a) or _is_mapping_type(a) or a is Any]
        elif isinstance(value, (list, tuple)):
            shaped = [a for a in options if _is_sequence_type(a) or a is Any]
        else:
            shaped = [a for a in options if not (dataclasses.is_dataclass(a) or _is_mapping_type(a) or _is_sequence_type(a))]
        if len(shaped) == 1:
            return self.value(shaped[0], value, key)
        for arm in shaped:
            try:
                return self.value(arm, value, key)
            except self.error:
                continue
        names = " | ".join(_type_name(a) for a in args)
        raise self.fail(key, f"expected {names}, got {_describe(value)}")


def from_mapping(
    cls: type[T],
    data: Any,
    *,
    origin: str = "",
    prefix: str = "",
    error: type[Exception] = ConfigError,
    unknown_hint: UnknownHint | None = None,
) -> T:
    """Build dataclass ``cls`` from ``data`` with strict checks (see the module docstring).

    ``origin`` (usually the file) and the dotted key (below ``prefix``) start every message; ``error`` is the
    exception class raised; ``unknown_hint(dotted_key)`` may add a sentence to an unknown-key message (e.g.
    "this key belongs to the other training stage").
    """
    return _Validator(origin, error, unknown_hint).dataclass(cls, data, prefix)


def to_plain(cfg: Any) -> Any:
    """A config dataclass (nested) as plain JSON/YAML data: dicts, lists (tuples become lists), scalars."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    return copy.deepcopy(cfg)


def has_key(cls: type, dotted: str) -> bool:
    """Whether the dataclass schema ``cls`` has the dotted key (list items by index, free-form mappings: any key)."""
    tp: Any = cls
    for part in dotted.split("."):
        tp = _strip_optional(tp)
        if dataclasses.is_dataclass(tp):
            if part not in _init_fields(tp):
                return False
            tp = _hints(tp)[part]
        elif _is_sequence_type(tp):
            if not part.lstrip("-").isdigit():
                return False
            args = get_args(tp)
            tp = args[0] if args and (get_origin(tp) is not tuple or args[-1] is Ellipsis) else Any
        elif _is_mapping_type(tp) or tp is Any:
            args = get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        else:
            return False
    return True


def prune_to_schema(cls: type, data: Any) -> Any:
    """``data`` without the keys that dataclass ``cls`` does not have (recursively; for reading old records)."""
    tp = _strip_optional(cls)
    if dataclasses.is_dataclass(tp) and isinstance(data, Mapping):
        hints, fields = _hints(tp), _init_fields(tp)
        return {k: prune_to_schema(hints[k], v) for k, v in data.items() if k in fields}
    if _is_sequence_type(tp) and isinstance(data, list):
        args = get_args(tp)
        item = args[0] if args and (get_origin(tp) is not tuple or args[-1] is Ellipsis) else Any
        return [prune_to_schema(item, v) for v in data]
    return data


def deep_merge(base: Any, update: Any) -> Any:
    """``update`` merged into ``base``: mappings key by key (recursively), anything else replaced (copied)."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        out = dict(base)
        for k, v in update.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(update)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value of a nested mapping (lists are leaves)."""
    if isinstance(tree, Mapping) and (tree or not prefix):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, _join(prefix, k)))
        return out
    return {prefix: tree}


# ---------------------------------------------------------------------------------------------- overrides
def parse_assignment(text: str, flag: str = "--set") -> tuple[str, Any]:
    """``"a.b.c=value"`` -> ``("a.b.c", YAML-parsed value)``."""
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r}: must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{flag} {text!r}: empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{flag} {text!r}: value is not valid YAML ({exc})") from exc
    return key, value


def parse_set(texts: Iterable[str], flag: str = "--set") -> dict[str, Any]:
    """Command-line ``key.path=value`` strings -> an overrides mapping (a repeated key: the last one wins)."""
    return merge_overrides(*({k: v} for k, v in (parse_assignment(t, flag) for t in texts)))


def merge_overrides(*overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Several overrides mappings as one that applies them in order (a key set again moves to the end)."""
    out: dict[str, Any] = {}
    for ov in overrides:
        for k, v in (ov or {}).items():
            out.pop(k, None)
            out[k] = v
    return out


def _inline_yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text.endswith("..."):
        text = text[:-3].strip()
    try:
        if yaml_load(text) == value:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(value, ensure_ascii=False)  # JSON is YAML: reads back as the same value


def format_set(overrides: Mapping[str, Any]) -> list[str]:
    """An overrides mapping as ``key=value`` strings for ``--set`` (the inverse of :func:`parse_set`)."""
    return [f"{k}={_inline_yaml(v)}" for k, v in overrides.items()]


def apply_overrides(
    cls: type,
    tree: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    *,
    origin: str = "override",
    error: type[Exception] = ConfigError,
    unknown_hint: UnknownHint | None = None,
) -> dict[str, Any]:
    """A copy of the plain config ``tree`` (of dataclass ``cls``) with ``overrides`` applied in order.

    Each key is a dotted path (list items by index: ``data.sources.0.weight``). A mapping given for a
    *section* (a dataclass) is merged into it key by key (``{"train": {"steps": 2}}`` keeps the other
    ``train`` keys); anything else — a value, a list, a free-form mapping such as ``model.overrides`` —
    replaces what was there. A key the schema does not have raises ``error`` naming it.
    """
    out = copy.deepcopy(dict(tree))
    for key, value in (overrides or {}).items():
        v = _Validator(f"{origin} {key!r}" if origin else repr(key), error, unknown_hint)
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise v.fail("", "bad key: use a dotted path such as train.steps")
        _assign(v, cls, out, key.split("."), value, "")
    return out


def _assign(v: _Validator, tp: Any, node: Any, parts: list[str], value: Any, done: str) -> None:
    part, rest = parts[0], parts[1:]
    here = _join(done, part)
    tp = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        fields = _init_fields(tp)
        if part not in fields:
            raise v.fail("", v.unknown(tp, done, part))
        if not isinstance(node, dict):
            raise v.fail(done, f"is {_describe(node)}, not a section")
        child_tp = _hints(tp)[part]
        if part not in node:
            default = _field_default(fields[part])
            node[part] = None if default is dataclasses.MISSING else to_plain(default)
        slot: Any = part
    elif _is_sequence_type(tp):
        if not isinstance(node, list):
            raise v.fail(done, f"is {_describe(node)}, not a list: set it whole ({done}=[...])")
        try:
            idx = int(part)
        except ValueError:
            raise v.fail(here, f"{done} is a list: index it with an integer, e.g. {done}.0") from None
        if not -len(node) <= idx < len(node):
            raise v.fail(here, f"index {idx} out of range for a list of {len(node)}")
        args = get_args(tp)
        if get_origin(tp) is tuple and args and args[-1] is not Ellipsis:
            child_tp = args[idx]
        else:
            child_tp = args[0] if args else Any
        slot = idx
    elif _is_mapping_type(tp) or tp is Any:
        if node is None and tp is Any:
            raise v.fail(done, "is null, not a section: set it whole")
        if not isinstance(node, dict):
            raise v.fail(done, f"is {_describe(node)}, not a section")
        args = get_args(tp)
        child_tp = args[1] if len(args) == 2 else Any
        if rest and part not in node:
            node[part] = {}
        slot = part
    else:
        raise v.fail(done, f"is a value ({_type_name(tp)}), not a section: {here} does not exist")
    if rest:
        _assign(v, child_tp, node[slot], rest, value, here)
        return
    section = _strip_optional(child_tp)
    if dataclasses.is_dataclass(section) and isinstance(value, Mapping) and isinstance(node[slot], dict):
        for k, val in value.items():
            if not isinstance(k, str) or not k:
                raise v.fail(here, f"bad key {k!r}")
            _assign(v, section, node[slot], k.split("."), val, here)
        return
    node[slot] = copy.deepcopy(to_plain(value))


# ---------------------------------------------------------------------------------------------- shipped configs
def packaged_config_dir(kind: str = "") -> Path:
    """The folder of the shipped configs (``kind="benchmarks"``: the benchmark definitions)."""
    root = importlib.resources.files(CONFIG_PACKAGE) / CONFIG_FOLDER
    if kind:
        root = root / kind
    if not isinstance(root, Path):  # pragma: no cover - only a zipped install has no real folder
        raise ConfigError(f"{CONFIG_PACKAGE} is installed zipped; its shipped configs need an installed folder")
    return root


def list_configs(kind: str = "") -> list[str]:
    """Names of the shipped configs of ``kind`` (``""``: training presets; ``"benchmarks"``), sorted."""
    folder = packaged_config_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_config(
    name_or_path: str | os.PathLike,
    kind: str = "",
    *,
    what: str = "config",
    error: type[Exception] = ConfigError,
    search_dirs: Sequence[str | os.PathLike] = (),
) -> Path:
    """The YAML file for a path or a shipped config's name.

    An existing file is returned as it is. A bare name (``teacher_tiny`` or ``teacher_tiny.yaml``) is looked up
    in ``search_dirs`` and then among the shipped configs of ``kind``. Otherwise ``error`` says what was
    looked for and lists the shipped names (with the closest one).
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    names = sorted(set(list_configs(kind)) | {p.stem for d in search_dirs if Path(d).is_dir() for p in Path(d).glob("*.yaml")})
    is_path = any(sep in text for sep in ("/", os.sep)) or (os.altsep is not None and os.altsep in text)
    if not is_path and text:
        filename = text if text.endswith((".yaml", ".yml")) else f"{text}.yaml"
        for folder in [*map(Path, search_dirs), packaged_config_dir(kind)]:
            candidate = folder / filename
            if candidate.is_file():
                return candidate
    if is_path or text.endswith((".yaml", ".yml")):
        stem = path.stem
        hint = (f"; {stem!r} is a shipped {what}: give its name ({stem}) instead of a path"
                if stem in names else "")
        raise error(f"{text}: {what} file not found{hint}")
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.5)
    did = f" Did you mean {close[0]!r}?" if close else ""
    raise error(f"unknown {what} {text!r}.{did} Shipped: {', '.join(names) or '(none)'}; or give a path to a YAML file")


__all__ = [
    "CONFIG_FOLDER",
    "CONFIG_PACKAGE",
    "apply_overrides",
    "deep_merge",
    "find_config",
    "flatten",
    "format_set",
    "from_mapping",
    "has_key",
    "list_configs",
    "merge_overrides",
    "packaged_config_dir",
    "parse_assignment",
    "parse_set",
    "prune_to_schema",
    "read_yaml",
    "to_plain",
    "yaml_load",
]
