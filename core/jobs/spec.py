"""What every job spec shares: field types, checks and (de)serialisation derived from the
annotations of its dataclass, with messages that name the field, what it must be and the
value received. The specs themselves are in core/jobs/specs.py."""
from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any, ClassVar

from ..errors import InputError

_SPECS: dict[str, type] = {}               # every Spec subclass by name
_SIMPLE_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,), "None": (type(None),)}


def _annotation_types(annotation: str):
    """The types an annotation accepts (``int | None`` → int, NoneType; ``float`` also
    takes an int; ``list[str]`` → list or tuple), or the spec class of ``list[Spec]``."""
    kinds: list = []
    for part in (p.strip() for p in str(annotation).split("|")):
        if part.startswith("list["):
            inner = part[5:-1]
            if inner not in _SIMPLE_TYPES:
                return _SPECS[inner]              # a list of nested specs
            kinds += [list, tuple]
        else:
            kinds += list(_SIMPLE_TYPES[part])
    return tuple(dict.fromkeys(kinds))


class Spec:
    """A dataclass of a job file: its field types, checks and (de)serialisation come from
    its annotations. ``NAN_OK``: fields where NaN is a legitimate value."""

    NAN_OK: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _SPECS[cls.__name__] = cls              # so that ``list[YearInput]`` finds its class

    @classmethod
    def nested(cls) -> dict[str, type]:
        """Fields holding lists of other specs (e.g. a mapping job's years)."""
        return {f.name: t for f in fields(cls) if isinstance(t := _annotation_types(f.type), type)}

    def check_types(self) -> None:
        """Each field (and each nested spec's) has a type its annotation allows."""
        types = {f.name: t for f in fields(self) if isinstance(t := _annotation_types(f.type), tuple)}
        _check_types(self, types, nan_ok=self.NAN_OK)
        for name, item_cls in self.nested().items():
            items = getattr(self, name)
            if not isinstance(items, (list, tuple)) or not all(isinstance(i, item_cls) for i in items):
                raise InputError(f"{type(self).__name__}.{name} must be a list of {item_cls.__name__}; "
                                 f"got {items!r}.")
            for item in items:
                item.check_types()

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = {k: v for k, v in data.items() if k != "kind"}
        _check_keys(cls, data)
        for name, item_cls in cls.nested().items():
            if name in data:
                data[name] = [item_cls.from_dict(item) for item in _items(data, name, item_cls, cls.__name__)]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        kind = getattr(type(self), "kind", None)
        return {"kind": kind, **asdict(self)} if kind else asdict(self)


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a text",
               list: "a list", tuple: "a list", type(None): "null"}


def _type_text(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = []
    for k in kinds:
        name = _TYPE_NAMES.get(k, k.__name__)
        if name not in names:
            names.append(name)
    return " or ".join(names)


def _check_types(obj, types: dict, nan_ok: tuple[str, ...] = ()) -> None:
    """Each field has one of its types (a bool is no number) and every number is finite;
    the message names the field, what it must be and the value received."""
    for name, kind in types.items():
        value = getattr(obj, name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wrong = not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds)
        if wrong:
            raise InputError(f"{type(obj).__name__}.{name} must be {_type_text(kind)}; got {value!r} "
                             f"({_TYPE_NAMES.get(type(value), type(value).__name__)}).")
        if isinstance(value, float) and not math.isfinite(value) and not (name in nan_ok and math.isnan(value)):
            raise InputError(f"{type(obj).__name__}.{name} must be a finite number; got {value!r}.")
        if isinstance(value, (list, tuple)):
            bad = [v for v in value if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                raise InputError(f"{type(obj).__name__}.{name} must hold finite numbers; got {bad[0]!r}.")


def _check_keys(cls, data) -> None:
    if not isinstance(data, dict):
        raise InputError(f"Each {cls.__name__} must be an object with the fields "
                         f"{', '.join(f.name for f in fields(cls))}; got {data!r}.")
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise InputError(f"Unknown field(s) in {cls.__name__}: {', '.join(sorted(map(str, unknown)))}; "
                         f"it has {', '.join(f.name for f in fields(cls))}.")


def _items(data: dict, key: str, cls, owner: str) -> list:
    """The list ``data[key]`` of objects for ``cls``; a message naming the field otherwise."""
    value = data.pop(key, [])
    if not isinstance(value, list):
        raise InputError(f"{owner}.{key} must be a list of objects with the fields "
                         f"{', '.join(f.name for f in fields(cls))}; got {value!r}.")
    for item in value:
        _check_keys(cls, item)
    return value
