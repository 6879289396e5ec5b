"""Just enough of Prometheus' rule files and PromQL to check how alert expressions join vectors.

A binary operator between two vectors (`and`, `or`, `unless`, comparisons, arithmetic) only
matches series whose labels are equal, so a rule joining `max by (service, consumer) (...)` with
an unaggregated vector, whose series carry every label, never matches anything and never fires.
`mismatched_joins` names every such join: both sides must aggregate by the same labels, or the
operator must say what it matches on with `on(...)` / `ignoring(...)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# -- rule files --------------------------------------------------------------------------------


def alert_expressions(path: Path) -> dict[str, str]:
    """Each alert's name and expression, from a rules file written as ours are: `- alert:` then
    `expr:` with a one-line value or a block (`>` or `|`) indented below it."""
    rules: dict[str, str] = {}
    lines = path.read_text().splitlines()
    name = None
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- alert:\s*(\S+)\s*$", line):
            name = m.group(1)
        elif (m := re.match(r"(\s*)expr:\s*(.*)$", line)) and name is not None:
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in (">", "|", ">-", "|-"):
                block = []
                for following in lines[i + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = " ".join(block).strip()
            rules[name] = value.strip("\"'")
            name = None
    return rules


# -- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    labels: frozenset[str] | None  # None: not aggregated, so every label its series have


SCALAR = "scalar"
Value = Vector | str

# Binary operators, loosest first; all but `^` associate to the left.
LEVELS = [
    ("or",),
    ("and", "unless"),
    ("==", "!=", ">=", "<=", ">", "<"),
    ("+", "-"),
    ("*", "/", "%", "atan2"),
    ("^",),
]
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
PARAMETRISED = {"topk", "bottomk", "quantile", "count_values"}  # a parameter, then the vector
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(Inf|NaN)$")
MODIFIER = re.compile(r"^(bool|on|ignoring|group_left|group_right)\b\s*(\(([^)]*)\))?\s*")


def mismatched_joins(expr: str) -> list[str]:
    """Every join of two vectors in `expr` whose sides cannot match, described."""
    problems: list[str] = []
    _value(expr, problems)
    return problems


def _value(expr: str, problems: list[str]) -> Value:
    e = _unwrap(expr.strip())
    for ops in LEVELS:
        split = _split(e, ops, rightmost=ops != ("^",))
        if split is not None:
            lhs, op, rhs = split
            on, ignoring, rhs = _modifiers(rhs)
            left, right = _value(lhs, problems), _value(rhs, problems)
            if left == SCALAR or right == SCALAR:
                return right if left == SCALAR else left
            problem = _join_problem(left, right, on, ignoring)  # type: ignore[arg-type]
            if problem:
                problems.append(f"{lhs.strip()}  {op}  {rhs.strip()}: {problem}")
            return left
    return _primary(e, problems)


def _join_problem(
    left: Vector, right: Vector, on: frozenset[str] | None, ignoring: frozenset[str] | None
) -> str | None:
    sides = (left.labels, right.labels)
    if on is not None:
        missing = [s for s in sides if s is not None and not on <= s]
        return f"on({', '.join(sorted(on))}) names labels a side lacks" if missing else None
    if None in sides:
        return "one side is not aggregated: aggregate both by the same labels, or use on(...)"
    ignored = ignoring or frozenset()
    if sides[0] - ignored != sides[1] - ignored:  # type: ignore[operator]
        return f"sides keep different labels: {sorted(sides[0])} and {sorted(sides[1])}"  # type: ignore[arg-type]
    return None


def _primary(e: str, problems: list[str]) -> Value:
    if NUMBER.match(e) or e.startswith(('"', "'")):
        return SCALAR
    m = re.match(r"^([a-zA-Z_][a-zA-Z0-9_]*)\s*", e)
    if m is None:
        raise ValueError(f"cannot read {e!r}")
    name, rest = m.group(1), e[m.end() :]
    if name in AGGREGATIONS | PARAMETRISED:
        return _aggregation(name, rest, problems)
    if rest.startswith("("):
        args = _arguments(rest)
        values = [_value(a, problems) for a in args]
        if name in ("time", "scalar", "pi"):
            return SCALAR
        vectors = [v for v in values if isinstance(v, Vector)]
        if name == "vector" or not vectors:
            return Vector(frozenset())
        labels = vectors[0].labels
        if name == "histogram_quantile" and labels is not None:
            labels = labels - {"le"}
        return Vector(labels)
    return Vector(None)  # a selector: metric{...}[range] offset ...


def _aggregation(name: str, rest: str, problems: list[str]) -> Vector:
    grouping = None
    m = re.match(r"^(by|without)\s*\(([^)]*)\)\s*", rest)
    if m:
        grouping, rest = m, rest[m.end() :]
    args = _arguments(rest)
    after = rest[_closing(rest, 0) + 1 :].strip()
    if grouping is None and (m := re.match(r"^(by|without)\s*\(([^)]*)\)$", after)):
        grouping = m
    inner = [_value(a, problems) for a in args]
    if name in ("topk", "bottomk") and grouping is None:
        return inner[-1] if isinstance(inner[-1], Vector) else Vector(None)
    if grouping is None:
        return Vector(frozenset())
    labels = frozenset(label.strip() for label in grouping.group(2).split(",") if label.strip())
    return Vector(labels if grouping.group(1) == "by" else None)


def _modifiers(rhs: str) -> tuple[frozenset[str] | None, frozenset[str] | None, str]:
    on = ignoring = None
    rest = rhs.strip()
    while m := MODIFIER.match(rest):
        labels = frozenset(x.strip() for x in (m.group(3) or "").split(",") if x.strip())
        if m.group(1) == "on":
            on = labels
        elif m.group(1) == "ignoring":
            ignoring = labels
        rest = rest[m.end() :]
    return on, ignoring, rest


def _unwrap(e: str) -> str:
    while e.startswith("(") and _closing(e, 0) == len(e) - 1:
        e = e[1:-1].strip()
    return e


def _closing(e: str, start: int) -> int:
    depth = 0
    for i in _outside_strings(e, start):
        if e[i] in "([{":
            depth += 1
        elif e[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced: {e!r}")


def _arguments(rest: str) -> list[str]:
    end = _closing(rest, 0)
    body, args, depth, start = rest[1:end], [], 0, 0
    for i in _outside_strings(body, 0):
        if body[i] in "([{":
            depth += 1
        elif body[i] in ")]}":
            depth -= 1
        elif body[i] == "," and depth == 0:
            args.append(body[start:i])
            start = i + 1
    args.append(body[start:])
    return [a for a in args if a.strip()]


def _split(e: str, ops: tuple[str, ...], *, rightmost: bool) -> tuple[str, str, str] | None:
    """`e` cut at the operator of `ops` that binds last, outside brackets and strings."""
    found = None
    depth = 0
    for i in _outside_strings(e, 0):
        c = e[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in sorted(ops, key=len, reverse=True):
                if e.startswith(op, i) and _is_operator(e, i, op):
                    found = (e[:i], op, e[i + len(op) :])
                    if not rightmost:
                        return found
                    break
    return found


def _is_operator(e: str, i: int, op: str) -> bool:
    before = e[:i].rstrip()
    if not before or before[-1] in "(,=<>!+-*/%^":
        return False  # a sign, not an operator
    if op[0].isalpha():  # a word operator, not part of a name
        around = e[i - 1 : i] + e[i + len(op) : i + len(op) + 1]
        return not any(c.isalnum() or c == "_" for c in around)
    return True


def _outside_strings(e: str, start: int) -> Iterator[int]:
    """Positions in `e` from `start` that are not inside a quoted string."""
    quote = None
    for i in range(start, len(e)):
        if quote:
            if e[i] == quote and e[i - 1] != "\\":
                quote = None
        elif e[i] in "\"'`":
            quote = e[i]
        else:
            yield i
