"""The chart dicts' schemas: :func:`validate_chart` checks one and says what is wrong where."""
from __future__ import annotations

import os
from typing import Any, Callable

from ...json_values import plain
from .style import KINDS, ChartDataError, _is_number


class _Checker:
    """Walks a chart dict and raises ChartDataError naming the source and the offending key."""

    def __init__(self, source: str | os.PathLike | None, kind: str = ""):
        self.source = source
        self.kind = kind

    def fail(self, message: str) -> None:
        schema = f" the '{self.kind}' chart schema" if self.kind else " the chart schema"
        where = f"The chart file {self.source}" if self.source is not None else "The chart data"
        raise ChartDataError(f"{where} does not match{schema}: {message}")

    @staticmethod
    def _name(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def obj(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            self.fail(f"'{path}' must be an object (a dict), not {type(value).__name__}.")
        return value

    def present(self, d: dict, key: str, path: str) -> Any:
        if key not in d:
            where = f"'{path}'" if path else "the top level"
            self.fail(f"{where} has no key '{key}' (missing key '{self._name(path, key)}').")
        return d[key]

    def string(self, d: dict, key: str, path: str, required: bool = True,
               allow_int: bool = False) -> None:
        if not required and d.get(key) is None:
            return
        value = self.present(d, key, path)
        ok = isinstance(value, str) or (allow_int and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            self.fail(f"'{self._name(path, key)}' must be text, not {value!r}.")

    def number(self, d: dict, key: str, path: str, minimum: float | None = None) -> None:
        """An optional number (None or absent allowed)."""
        value = d.get(key)
        if value is None:
            return
        if not _is_number(value):
            self.fail(f"'{self._name(path, key)}' must be a number or null, not {value!r}.")
        if minimum is not None and value < minimum:
            self.fail(f"'{self._name(path, key)}' must be at least {minimum}, not {value!r}.")

    def array(self, d: dict, key: str, path: str, required: bool = True,
              length: int | None = None, length_of: str = "", integer: bool = False) -> list | None:
        """A list of numbers or nulls; nulls (missing values) are skipped when drawing."""
        if not required and key not in d:
            return None
        name = self._name(path, key)
        values = self.present(d, key, path)
        if not isinstance(values, list):
            self.fail(f"'{name}' must be a list of numbers, not {type(values).__name__}.")
        for i, v in enumerate(values):
            if v is None:
                continue
            if not _is_number(v):
                self.fail(f"'{name}[{i}]' must be a number or null, not {v!r}.")
            if integer and v != int(v):
                self.fail(f"'{name}[{i}]' must be a whole number, not {v!r}.")
        if length is not None and len(values) != length:
            self.fail(f"'{name}' has {len(values)} values but '{length_of}' has {length}; "
                      "they must have the same length.")
        return values

    def items(self, d: dict, key: str, path: str, required: bool = True) -> list:
        if not required and key not in d:
            return []
        values = self.present(d, key, path)
        if not isinstance(values, list):
            self.fail(f"'{self._name(path, key)}' must be a list, not {type(values).__name__}.")
        return values


def validate_chart(data: Any, source: str | os.PathLike | None = None,
                   kind: str | None = None) -> dict:
    """Check ``data`` against the chart schema and return a JSON-ready copy of it.

    The copy has numpy arrays and scalars turned into lists and Python numbers and non-finite
    floats turned into ``None``. ``source`` (a file name) is named in the error message;
    ``kind``, when given, is the kind the caller expects. Raises :class:`ChartDataError`.

    Schemas (``title`` is optional everywhere; numbers may be ``null`` where a value is missing;
    keys not listed are kept and ignored)::

        {"kind": "fad", "title": str, "true_exponent": float | null,
         "series": [{"label": str, "n": int | null,
                     "bin_centers": [float], "density": [float],             # same length
                     "fits": [{"name": str, "label": str, "x": [float], "y": [float]}],
                     "rollover_m2": float | null, "x_min_m2": float | null,
                     "alpha": float | null, "mls": float | null}]}

        {"kind": "trend", "title": str, "years": [int],                       # unique
         "series": [{"label": str, "count": [int | null],                     # one per year
                     "area_m2": [float | null]}]}                             # optional

        {"kind": "area_scatter", "title": str,
         "pairs": [{"year": int | str, "reference_m2": [float], "predicted_m2": [float],
                    "residual_m2": [float],          # optional, same length; else predicted − reference
                    "missed_reference_m2": [float],  # optional: reference polygons with no match
                    "false_alarm_m2": [float]}]}     # optional: predicted polygons with no match

    In a FAD series only ``label``, ``bin_centers`` and ``density`` are required; a fit needs
    ``name``, ``x`` and ``y`` (its ``label`` defaults to a readable form of the name).
    """
    check = _Checker(source)
    data = plain(data)
    if not isinstance(data, dict):
        check.fail(f"the top level must be an object (a dict) with a 'kind' key, not {type(data).__name__}.")
    chart_kind = check.present(data, "kind", "")
    if chart_kind not in KINDS:
        check.fail(f"unknown chart kind {chart_kind!r}; expected one of {', '.join(KINDS)}.")
    if kind is not None and chart_kind != kind:
        check.fail(f"this is a '{chart_kind}' chart, not a '{kind}' chart.")
    check.kind = chart_kind
    check.string(data, "title", "", required=False)
    _VALIDATORS[chart_kind](check, data)
    return data


def _validate_fad(check: _Checker, data: dict) -> None:
    check.number(data, "true_exponent", "")
    for i, s in enumerate(check.items(data, "series", "")):
        path = f"series[{i}]"
        check.obj(s, path)
        check.string(s, "label", path, allow_int=True)
        check.number(s, "n", path, minimum=0)
        x = check.array(s, "bin_centers", path)
        check.array(s, "density", path, length=len(x), length_of=f"{path}.bin_centers")
        for key in ("rollover_m2", "x_min_m2", "alpha", "mls"):
            check.number(s, key, path)
        check.number(s, "n_tail", path, minimum=0)
        for j, fit in enumerate(check.items(s, "fits", path, required=False)):
            fpath = f"{path}.fits[{j}]"
            check.obj(fit, fpath)
            check.string(fit, "name", fpath)
            check.string(fit, "label", fpath, required=False)
            fx = check.array(fit, "x", fpath)
            check.array(fit, "y", fpath, length=len(fx), length_of=f"{fpath}.x")


def _validate_trend(check: _Checker, data: dict) -> None:
    years = check.array(data, "years", "", integer=True)
    if any(y is None for y in years):
        check.fail("'years' must not contain null.")
    if len(set(years)) != len(years):
        check.fail(f"'years' lists a year more than once: {years}.")
    for i, s in enumerate(check.items(data, "series", "")):
        path = f"series[{i}]"
        check.obj(s, path)
        check.string(s, "label", path)
        counts = check.array(s, "count", path, length=len(years), length_of="years", integer=True)
        if any(c is not None and c < 0 for c in counts):
            check.fail(f"'{path}.count' must not be negative.")
        check.array(s, "area_m2", path, required=False, length=len(years), length_of="years")


def _validate_area_scatter(check: _Checker, data: dict) -> None:
    for i, p in enumerate(check.items(data, "pairs", "")):
        path = f"pairs[{i}]"
        check.obj(p, path)
        check.string(p, "year", path, allow_int=True)
        ref = check.array(p, "reference_m2", path)
        check.array(p, "predicted_m2", path, length=len(ref), length_of=f"{path}.reference_m2")
        check.array(p, "residual_m2", path, required=False, length=len(ref),
                    length_of=f"{path}.reference_m2")
        check.array(p, "missed_reference_m2", path, required=False)
        check.array(p, "false_alarm_m2", path, required=False)


_VALIDATORS: dict[str, Callable[[_Checker, dict], None]] = {
    "fad": _validate_fad, "trend": _validate_trend, "area_scatter": _validate_area_scatter}
