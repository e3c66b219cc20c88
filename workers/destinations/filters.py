"""Destination filters: conditions on an event's parameters and scope keys. Pure.

A destination's ``filter`` (SPEC 4) is a JSON object in the Mongo / Svix style::

    {"DURATION": {"$gt": 10}}                                   # segments over 10 s
    {"$or": [{"CALLEDAORS": {"$contains": "sip:100@"}},
             {"CALLEDAORS": {"$startsWith": "sip:200@"}}]}      # calls to some AORs
    {"ROUTE": "support-line", "RESULT": {"$neq": "failure"}}    # a bare value means $eq

Keys of an object are ANDed. ``$and`` / ``$or`` take a non-empty list of filters,
``$not`` one filter. Every other key is a parameter name of SPEC 2, upper case as
in templates (``DURATION``, ``CALLEDAORS``, and the event's own fields ``EVENT``,
``EVENTID``, ``RESULT``, ``ERROR``, ``TIMESTAMP``, ``ACCOUNT``, ``ROUTE``, ``REALM``),
whose condition is a bare value or an object of operators (all must hold):
``$eq $neq $in $nin $gt $gte $lt $lte $exists $startsWith $contains``.

How values compare (events carry parameters as strings or integers):

- an operand that is a **number** compares numerically: an integer parameter, or a
  string parameter written as a decimal number (``"12"``, ``"12.5"``, ``"-3"``), is
  that number; any other value (``"abc"``, ``""``) is not equal and not ordered;
- an operand that is a **string** compares as text: an integer parameter is its
  decimal text (``{"SEQUENCE": "3"}`` matches ``3`` and ``"3"``, not ``"03"``);
  ``$gt``/``$lt`` with a string compare code point by code point (ISO 8601 times in
  UTC, such as ``TIMESTAMP``, compare chronologically);
- ``$startsWith`` / ``$contains`` take a string and test the value's text;
- a list parameter (``CALLEDAORS``) matches when any item does; ``$neq`` / ``$nin``
  match when no item does;
- a parameter the event did not supply (an absent scope key, ``ERROR`` on success)
  matches only ``$neq``, ``$nin`` and ``$exists: false``. ``$exists: true`` holds for
  every supplied value, the empty string included. ``null`` and booleans are not
  values: write ``{"$exists": false}``.

:func:`compile_filter` validates a filter against the destination's event types (a
parameter one of them lacks is refused, as in templates) and bounds its size, then
returns a :class:`Filter` whose :meth:`Filter.test` is a chain of closures: no
parsing at match time. Whatever it is given, its only error is :class:`InvalidFilter`.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.errors import RecnotifyError
from producer.events import Event, ParamValue, params_for
from workers.destinations.values import show
from workers.errors import FieldError

__all__ = [
    "FIELD_OPERATORS",
    "LOGICAL_OPERATORS",
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_ITEMS",
    "MAX_FILTER_TEXT_CHARS",
    "MAX_FILTER_VALUES",
    "Filter",
    "InvalidFilter",
    "compile_filter",
    "event_values",
]

FIELD_OPERATORS: tuple[str, ...] = (
    "$eq", "$neq", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$startsWith",
    "$contains",
)
LOGICAL_OPERATORS: tuple[str, ...] = ("$and", "$or", "$not")
#: Deepest nesting of objects and lists in a filter (the filter object itself is level 1).
MAX_FILTER_DEPTH = 16
#: Most values (objects, lists, keys' values, list items) in one filter, and per list or map.
MAX_FILTER_VALUES = 1_000
MAX_FILTER_ITEMS = 256
MAX_FILTER_TEXT_CHARS = 1_024
#: Integers beyond this magnitude are refused (no event carries one; floats stay exact).
_MAX_INT = 2**63
#: A string parameter that reads as a decimal number (no exponent, no spaces, no "inf").
_NUMBER_RE = re.compile(r"[+-]?([0-9]{1,40}(\.[0-9]{0,40})?|\.[0-9]{1,40})")
_NAME_RE = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]{0,39}")
_EXAMPLE = '{"DURATION": {"$gt": 10}}'

Values = Mapping[str, ParamValue]
Test = Callable[[Values], bool]
Scalar = str | int | float


class InvalidFilter(RecnotifyError, ValueError):
    """A filter that cannot be compiled. ``problems`` holds one FieldError per mistake;
    their messages say where in the filter, the bad value and the fix."""

    def __init__(self, problems: list[FieldError]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled filter. ``source`` is the filter as JSON (what ``to_dict`` writes back);
    ``names`` the parameters it reads. Equal when the sources are equal."""

    source: dict[str, Any]
    names: frozenset[str]
    _test: Test = field(compare=False, repr=False)

    def test(self, values: Values) -> bool:
        """Does an event with these :func:`event_values` pass?"""
        return self._test(values)

    def matches(self, event: Event) -> bool:
        return self._test(event_values(event))


def event_values(event: Event) -> dict[str, ParamValue]:
    """What a filter sees of ``event``: its params plus its own fields (SPEC 2 names);
    a scope key or ``ERROR`` the event does not have is absent, not empty."""
    out: dict[str, ParamValue] = dict(event.params)
    out["EVENT"] = event.type
    out["EVENTID"] = event.id
    out["RESULT"] = event.result
    out["TIMESTAMP"] = event.occurred_at
    if event.error is not None:
        out["ERROR"] = event.error
    if event.route is not None:
        out["ROUTE"] = event.route
    if event.account is not None:
        out["ACCOUNT"] = event.account
    if event.realm is not None:
        out["REALM"] = event.realm
    return out


def compile_filter(spec: Any, event_types: Sequence[str]) -> Filter | None:
    """The :class:`Filter` of ``spec`` for a destination of ``event_types``; None for no
    filter (``null`` or ``{}``). Raises :class:`InvalidFilter` listing every problem."""
    if spec is None or (isinstance(spec, Mapping) and not spec):
        return None
    too_big = _bounds(spec)
    if too_big is not None:
        raise InvalidFilter([too_big])
    compiler = _Compiler(tuple(event_types))
    test = compiler.filter(spec, "")
    if compiler.problems:
        raise InvalidFilter(compiler.problems)
    source = json.loads(json.dumps(spec))  # plain dicts and lists, as stored and exported
    return Filter(source, frozenset(compiler.names), test)


def _problem(where: str, value: Any, message: str) -> FieldError:
    return FieldError("filter", value, f"{where}: {message}" if where else message)


def _label(key: Any) -> str:
    """A key as a message shows it: as is when it reads like a name, else quoted (so a
    newline or a control character in it never splits a message)."""
    if isinstance(key, str) and _NAME_RE.fullmatch(key):
        return key
    return show(key) if isinstance(key, str) else f"<{type(key).__name__}>"


def _join(where: str, key: Any) -> str:
    name = _label(key)
    return f"{where}.{name}" if where else name


def _bounds(spec: Any) -> FieldError | None:
    """The first size limit ``spec`` breaks, checked before anything walks it further
    (iterative, and counting every visit: a YAML alias bomb or cycle stops early)."""
    budget = MAX_FILTER_VALUES
    stack: list[tuple[Any, int, str]] = [(spec, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        budget -= 1
        if budget < 0:
            return _problem("", None, f"more than {MAX_FILTER_VALUES:,} values in all, over "
                            "the limit (split it over several destinations)")
        if isinstance(value, str):
            if len(value) > MAX_FILTER_TEXT_CHARS:
                return _problem(where, None, f"{len(value):,} characters, over the limit of "
                                f"{MAX_FILTER_TEXT_CHARS:,}")
            continue
        if not isinstance(value, Mapping | list | tuple):
            continue
        if depth > MAX_FILTER_DEPTH:
            return _problem(where, None, f"nested deeper than {MAX_FILTER_DEPTH} levels, over "
                            "the limit")
        if len(value) > MAX_FILTER_ITEMS:
            return _problem(where, None, f"{len(value):,} items, over the limit of "
                            f"{MAX_FILTER_ITEMS}")
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1, _join(where, key)) for key, item in value.items())
        else:
            stack.extend((item, depth + 1, f"{where}[{n}]") for n, item in enumerate(value))
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_MAX_INT <= value <= _MAX_INT
    return isinstance(value, float) and math.isfinite(value)


def _number(value: ParamValue) -> int | float | None:
    """``value`` as a number, or None when it does not read as one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= 40:  # the common case
            return int(value)
        if _NUMBER_RE.fullmatch(value):
            return float(value) if "." in value else int(value)
    return None


def _text(value: ParamValue) -> str:
    return value if isinstance(value, str) else str(value)


def _all(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:  # the common case, without a generator per call
        first, second = tests
        return lambda values: first(values) and second(values)
    frozen = tuple(tests)

    def every(values: Values) -> bool:
        for test in frozen:  # noqa: SIM110 - no generator per call on the match path
            if not test(values):
                return False
        return True

    return every


def _any(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda values: first(values) or second(values)
    frozen = tuple(tests)

    def some(values: Values) -> bool:
        for test in frozen:  # noqa: SIM110 - no generator per call on the match path
            if test(values):
                return True
        return False

    return some


def _never(_values: Values) -> bool:
    return False


def _on_field(name: str, pred: Callable[[ParamValue], bool]) -> Test:
    """True when ``name`` is supplied and ``pred`` holds for it (for any item of a list)."""

    def test(values: Values) -> bool:
        value = values.get(name)
        if value is None:
            return False
        if type(value) is list:
            for item in value:  # noqa: SIM110 - no generator per call on the match path
                if pred(item):
                    return True
            return False
        return pred(value)

    return test


def _negate(test: Test) -> Test:
    return lambda values: not test(values)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": operator.eq, "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt,
    "$lte": operator.le,
}


def _compare(op: str, operand: Scalar) -> Callable[[ParamValue], bool]:
    """The one-value predicate of an ordering or equality operator (``value OP operand``)."""
    check = _COMPARISONS[op]
    if isinstance(operand, str):
        s: str = operand
        return lambda v: check(v if type(v) is str else str(v), s)
    number: int | float = operand

    def numeric(v: ParamValue) -> bool:
        if type(v) is str and v.isdigit() and v.isascii() and len(v) <= 40:  # the common case
            return check(int(v), number)
        n = _number(v)
        return n is not None and check(n, number)

    return numeric


def _member(operands: list[Scalar]) -> Callable[[ParamValue], bool]:
    texts = frozenset(o for o in operands if isinstance(o, str))
    numbers = frozenset(o for o in operands if not isinstance(o, str))

    def member(v: ParamValue) -> bool:
        if _text(v) in texts:
            return True
        if not numbers:
            return False
        n = _number(v)
        return n is not None and n in numbers

    return member


class _Compiler:
    """Walks one (bounded) filter, building closures and collecting problems."""

    def __init__(self, event_types: tuple[str, ...]) -> None:
        self.types = event_types
        self.problems: list[FieldError] = []
        self.names: set[str] = set()

    def fail(self, where: str, value: Any, message: str) -> None:
        self.problems.append(_problem(where, value, message))

    def filter(self, spec: Any, where: str) -> Test:
        if not isinstance(spec, Mapping) or not spec:
            self.fail(where, spec, f"{show(spec)} is not a filter (expected an object of "
                      f"conditions, e.g. {_EXAMPLE})")
            return _never
        tests: list[Test] = []
        for key, value in spec.items():
            at = _join(where, key)
            if key in LOGICAL_OPERATORS:
                tests.append(self.logical(key, value, at))
            elif key in FIELD_OPERATORS:
                self.fail(at, key, f"{key} applies to a parameter: write "
                          f'{{"NAME": {{"{key}": ...}}}}')
            elif isinstance(key, str) and key.startswith("$"):
                self.fail(at, key, f"unknown operator {show(key)} "
                          f"({self._hint(key, LOGICAL_OPERATORS + FIELD_OPERATORS)})")
            else:
                tests.append(self.condition(key, value, at))
        return _all(tests)

    def logical(self, op: str, value: Any, where: str) -> Test:
        if op == "$not":
            return _negate(self.filter(value, where))
        if not isinstance(value, list | tuple) or not value:
            self.fail(where, value, f"{op} takes a non-empty list of filters, got {show(value)}")
            return _never
        tests = [self.filter(item, f"{where}[{n}]") for n, item in enumerate(value)]
        return _all(tests) if op == "$and" else _any(tests)

    def condition(self, name: Any, cond: Any, where: str) -> Test:
        known = self.name(name, where)
        if isinstance(cond, Mapping):
            if not cond:
                self.fail(where, cond, f"{{}} is not a condition (give a value or operators, "
                          f"e.g. {_EXAMPLE})")
                return _never
            tests = [self.operator(known, op, operand, _join(where, op))
                     for op, operand in cond.items()]
            return _all(tests)
        return self.operator(known, "$eq", cond, where)

    def name(self, name: Any, where: str) -> str:
        if not isinstance(name, str):
            self.fail(where, name, f"{show(name)} is not a parameter name (e.g. DURATION)")
            return ""
        self.names.add(name)
        label = _label(name)
        lacking = [t for t in self.types if name not in params_for(t)]
        upper = name.upper()
        hint = (f"; did you mean {upper}?" if upper != name
                and all(upper in params_for(t) for t in self.types) else "")
        # the wording of templates' "placeholder %X% is not a parameter of ..."
        if len(lacking) == 1:
            valid = ", ".join(sorted(params_for(lacking[0])))
            self.fail("", name, f"{label} is not a parameter of {lacking[0]} "
                      f"(valid: {valid}{hint})")
        elif lacking:
            common = frozenset.intersection(*(params_for(t) for t in self.types))
            self.fail("", name, f"{label} is not a parameter of {', '.join(lacking)} (valid "
                      f"for every event of this destination: {', '.join(sorted(common))}"
                      f"{hint}; or filter on it in a destination of only the events that "
                      "have it)")
        return name

    def operator(self, name: str, op: Any, operand: Any, where: str) -> Test:
        if op not in FIELD_OPERATORS:
            if op in LOGICAL_OPERATORS:
                self.fail(where, op, f"{op} combines filters, not values: write "
                          f'{{"{op}": [{{"{_label(name) if name else "NAME"}": ...}}, ...]}}')
            else:
                self.fail(where, op, f"unknown operator {show(op)} "
                          f"({self._hint(op, FIELD_OPERATORS)})")
            return _never
        if op == "$exists":
            if not isinstance(operand, bool):
                self.fail(where, operand, f"$exists takes true or false, got {show(operand)}")
                return _never
            return (lambda v: name in v) if operand else (lambda v: name not in v)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list | tuple) or not operand:
                self.fail(where, operand, f"{op} takes a non-empty list of strings or "
                          f"numbers, got {show(operand)}")
                return _never
            items = [item for n, item in enumerate(operand)
                     if self.scalar(op, item, f"{where}[{n}]")]
            test = _on_field(name, _member(items))
            return _negate(test) if op == "$nin" else test
        if op in ("$startsWith", "$contains"):
            if not isinstance(operand, str):
                self.fail(where, operand, f"{op} takes a string, got {show(operand)}")
                return _never
            s = operand
            pred: Callable[[ParamValue], bool] = (
                (lambda v: _text(v).startswith(s)) if op == "$startsWith"
                else (lambda v: s in _text(v)))
            return _on_field(name, pred)
        if not self.scalar(op, operand, where):
            return _never
        if op == "$neq":
            return _negate(_on_field(name, _compare("$eq", operand)))
        return _on_field(name, _compare(op, operand))

    def scalar(self, op: str, value: Any, where: str) -> bool:
        if isinstance(value, str) or _is_number(value):
            return True
        if value is None:
            why = 'null is not a value: for an absent parameter write {"$exists": false}'
        elif isinstance(value, bool):
            why = (f"{value!r} is not a value (parameters are strings or integers; "
                   "for presence use $exists)")
        elif isinstance(value, Mapping | list | tuple):
            why = f"{show(value)} is not a string or a number"
            if op == "$eq" and isinstance(value, list | tuple):
                why += ' (for one of several values write {"$in": [...]})'
        else:
            why = (f"{show(value)} is not a string or a finite number within +-2**63 "
                   "(in YAML, quote dates and times)")
        self.fail(where, value, f"{op}: {why}")
        return False

    @staticmethod
    def _hint(op: Any, known: tuple[str, ...]) -> str:
        close = difflib.get_close_matches(str(op), known, n=1)
        listed = f"expected one of {', '.join(known)}"
        return f"{listed}; did you mean {close[0]}?" if close else listed
