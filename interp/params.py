"""Declared analysis parameters: type, allowed values, default, quick default, unit, meaning.

Each analysis declares its parameters once (``interp/<analysis>/params.py``)::

    PARAMS = Params("recall", [
        Param("max_facts", "int", None, quick=24, min=2, null="all facts", unit="facts",
              help="first N facts of each relation"),
        ...
    ])

:meth:`Params.validate` checks every value a caller sets before the model loads and turns each bad
value into one :class:`~interp.errors.InterpError` naming the parameter and what it allows;
:meth:`Params.check_model` checks the bounds that depend on the model (layers, heads) once it is
loaded, before anything is computed; :meth:`Params.help_table` is what ``interp run ANALYSIS
--help`` prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from interp.errors import InterpError

_UNSET = object()
KINDS = ("int", "float", "bool", "str", "choice", "int_list", "str_list", "path", "json")


@dataclass
class Param:
    """One parameter of an analysis.

    Attributes:
        name: the key of ``--set name=value``.
        kind: ``int``, ``float``, ``bool``, ``str``, ``choice``, ``int_list``, ``str_list``, ``path``
            (an existing file or folder) or ``json`` (a structure checked by ``check``).
        default: the value when nothing is set.
        quick: the value under ``--quick`` when nothing is set (omit when it is the default).
        min: smallest allowed number (for lists: of each item).
        max: largest allowed number.
        min_open: ``min`` itself is not allowed.
        choices: the allowed values of a ``choice`` (or of each item of a ``str_list``).
        null: what ``null`` (None) means, when it is allowed.
        unit: the unit of the value (``facts``, ``tokens``, ``s``); "" when none.
        help: one line saying what the parameter does.
        check: extra check of a coerced value, returning what is wrong or None.
        allows: what the parameter allows, in words, where the kind alone says too little (a
            ``str`` that names a corpus or a folder, say); replaces the kind's description.
        model_max: the largest value the loaded model allows (from the model and the resolved
            parameters), checked by :meth:`Params.check_model`.
    """

    name: str
    kind: str
    default: Any
    quick: Any = _UNSET
    min: Optional[float] = None
    max: Optional[float] = None
    min_open: bool = False
    choices: Optional[Sequence[Any]] = None
    null: Optional[str] = None
    unit: str = ""
    help: str = ""
    check: Optional[Callable[[Any], Optional[str]]] = None
    allows: str = ""
    model_max: Optional[Callable[[Any, dict[str, Any]], int]] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"parameter {self.name}: a choice needs choices")

    @property
    def has_quick(self) -> bool:
        return self.quick is not _UNSET

    def allowed(self) -> str:
        """What the parameter allows, in words (the tail of every error about it)."""
        lo = "" if self.min is None else (f"> {self.min:g}" if self.min_open else f">= {self.min:g}")
        hi = "" if self.max is None else f"<= {self.max:g}"
        rng = " and ".join(x for x in (lo, hi) if x)
        what = {
            "int": "an integer" + (f" {rng}" if rng else ""),
            "float": "a number" + (f" {rng}" if rng else ""),
            "bool": "true or false",
            "str": "a string",
            "choice": "one of " + ", ".join(str(c) for c in (self.choices or [])),
            "int_list": "integers" + (f" {rng}" if rng else "") + " (a JSON list or comma-separated)",
            "str_list": ("names from " + ", ".join(map(str, self.choices)) if self.choices else "names")
                        + " (a JSON list or comma-separated)",
            "path": "an existing file or folder",
            "json": "a JSON value",
        }[self.kind] if not self.allows else self.allows
        return what + (f", or null ({self.null})" if self.null else "")

    def range_text(self) -> str:
        """The allowed range for the help table."""
        if self.kind == "choice" or (self.kind == "str_list" and self.choices):
            return "|".join(str(c) for c in self.choices or [])
        if self.kind in ("int", "float", "int_list"):
            lo = "" if self.min is None else (f">{self.min:g}" if self.min_open else f">={self.min:g}")
            hi = "" if self.max is None else f"<={self.max:g}"
            if lo and hi:
                return f"{lo},{hi}" if self.min_open else f"{self.min:g}..{self.max:g}"
            return lo or hi or "any"
        return {"bool": "true|false", "path": "existing path", "json": "JSON", "str": "text",
                "str_list": "names"}.get(self.kind, "")

    def _fail(self, value: Any, why: Optional[str] = None) -> InterpError:
        shown = json.dumps(value) if isinstance(value, (int, float, list, bool)) or value is None else repr(value)
        return InterpError(f"--set {self.name}={shown}: {why or 'not allowed'}; allowed: {self.allowed()}")

    def _number(self, v: Any, integer: bool, raw: Any) -> Any:
        if isinstance(v, bool):
            raise self._fail(raw)
        if isinstance(v, str):
            try:
                v = json.loads(v.strip())
            except ValueError:
                raise self._fail(raw, "not a number") from None
        if integer:
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool):
                raise self._fail(raw, "not an integer")
        else:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
                raise self._fail(raw, "not a number")
            v = float(v)
        if self.min is not None and (v < self.min or (self.min_open and v == self.min)):
            raise self._fail(raw, "too small")
        if self.max is not None and v > self.max:
            raise self._fail(raw, "too large")
        return v

    def coerce(self, raw: Any) -> Any:
        """The value ``raw`` checked and converted to this parameter's type.

        Raises:
            InterpError: one line naming the parameter and what it allows.
        """
        v = raw
        if v is None or (isinstance(v, str) and v.strip().lower() in ("null", "none") and self.kind not in ("str", "json")):
            if self.null is None and self.default is not None:
                raise self._fail(raw, "null is not allowed")
            return None
        k = self.kind
        if k == "int":
            v = self._number(v, True, raw)
        elif k == "float":
            v = self._number(v, False, raw)
        elif k == "bool":
            if isinstance(v, str) and v.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
                v = v.strip().lower() in ("true", "yes", "1")
            elif isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
                v = bool(v)
            if not isinstance(v, bool):
                raise self._fail(raw)
        elif k == "str":
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise self._fail(raw)
            v = str(v)
        elif k == "choice":
            if v not in self.choices:
                raise self._fail(raw)
        elif k in ("int_list", "str_list"):
            items = v
            if isinstance(items, str):
                items = [x.strip() for x in items.split(",") if x.strip()]
            elif not isinstance(items, (list, tuple)):
                items = [items]
            if not items:
                raise self._fail(raw, "empty")
            if k == "int_list":
                v = [self._number(x, True, raw) for x in items]
            else:
                if not all(isinstance(x, str) for x in items):
                    raise self._fail(raw)
                v = list(items)
                if self.choices:
                    bad = [x for x in v if x not in self.choices]
                    if bad:
                        raise self._fail(raw, f"unknown {', '.join(bad)}")
        elif k == "path":
            if not isinstance(v, str) or not v:
                raise self._fail(raw)
            if not Path(v).expanduser().exists():
                raise self._fail(raw, "no such file or folder")
        if self.check is not None:
            why = self.check(v)
            if why:
                raise self._fail(raw, why)
        return v

    def default_text(self, value: Any) -> str:
        if value is None:
            return "null"
        return json.dumps(value) if not isinstance(value, str) else (value if value else '""')


class Params:
    """The declared parameters of one analysis.

    Args:
        analysis: the analysis name (for messages).
        params: its parameters.
        check_all: a check of the coerced parameters together (returns what is wrong, or None).
    """

    def __init__(self, analysis: str, params: Sequence[Param],
                 check_all: Optional[Callable[[dict[str, Any]], Optional[str]]] = None) -> None:
        self.analysis = analysis
        self.params = {p.name: p for p in params}
        if len(self.params) != len(params):
            raise ValueError(f"{analysis}: a parameter is declared twice")
        self.check_all = check_all

    def __iter__(self):
        return iter(self.params.values())

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def __getitem__(self, name: str) -> Param:
        return self.params[name]

    def defaults(self) -> dict[str, Any]:
        """Name -> default (the analysis module's ``DEFAULTS``)."""
        return {p.name: p.default for p in self}

    def quick_values(self) -> dict[str, Any]:
        """Name -> quick default, for the parameters whose quick value differs (``QUICK``)."""
        return {p.name: p.quick for p in self if p.has_quick}

    def validate(self, overrides: dict[str, Any], quick: bool = False) -> dict[str, Any]:
        """Check and convert the values a caller set.

        Args:
            overrides: name -> value as given (``--set`` values arrive as JSON or strings).
            quick: whether the run uses quick defaults (for the joint check).

        Returns:
            name -> converted value, for the names in ``overrides`` only.

        Raises:
            InterpError: for an unknown name or a value not allowed (one line each).
        """
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise InterpError(f"{self.analysis} has no parameter(s) {', '.join(unknown)}; "
                              f"`interp run {self.analysis} --help` lists them")
        out = {k: self.params[k].coerce(v) for k, v in overrides.items()}
        if self.check_all is not None:
            why = self.check_all(self.effective(out, quick))
            if why:
                raise InterpError(f"{self.analysis}: {why}")
        return out

    def effective(self, overrides: dict[str, Any], quick: bool = False) -> dict[str, Any]:
        """Every parameter's value: the caller's, else the quick default (with ``quick``), else the default."""
        out = {}
        for p in self:
            if p.name in overrides:
                out[p.name] = overrides[p.name]
            elif quick and p.has_quick:
                out[p.name] = p.quick
            else:
                out[p.name] = p.default
        return out

    def check_model(self, values: dict[str, Any], model: Any) -> None:
        """Check the bounds that depend on the loaded model (before anything is computed).

        Raises:
            InterpError: naming the parameter, its value and the model's limit.
        """
        for p in self:
            v = values.get(p.name)
            if p.model_max is None or v is None:
                continue
            hi = int(p.model_max(model, values))
            vals = v if isinstance(v, list) else [v]
            if any(isinstance(x, (int, float)) and x > hi for x in vals):
                raise InterpError(f"--set {p.name}={json.dumps(v)}: too large for {getattr(model, 'spec', 'this model')}; "
                                  f"allowed: at most {hi}")

    def help_table(self) -> str:
        """The parameter list ``interp run ANALYSIS --help`` prints."""
        rows = [("name", "type", "default", "quick", "allowed", "meaning")]
        for p in self:
            kind = p.kind + ("|null" if p.null else "")
            quick = p.default_text(p.quick) if p.has_quick else "="
            meaning = p.help + (f" [{p.unit}]" if p.unit else "") + (f" (null: {p.null})" if p.null else "")
            rows.append((p.name, kind, p.default_text(p.default), quick, p.range_text(), meaning))
        widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((24, 14, 18, 12, 22, 200))]
        lines = []
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
        return (f"parameters of {self.analysis} (--set NAME=VALUE, repeatable; values are JSON or plain text; "
                "quick: the value under --quick, '=' when it is the default):\n" + "\n".join(lines))
