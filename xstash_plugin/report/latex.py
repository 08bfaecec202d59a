"""Results as a LaTeX table for a paper: one booktabs ``table`` float to paste or ``\\input``.

A paper reports a sweep point by its mean over seeds and the uncertainty of that mean, so an
aggregate row (see the seeds contract) becomes ``$0.912 \\pm 0.011$`` (the half-width of its
confidence interval) and its seed rows are left out: the aggregate stands for them. Rows of
experiments without seeds show their value. The best value of each metric is bold, as papers do,
but only where the rows say which way is better: a guessed direction would bold the worst one.

Every text cell comes from a config or a tool's metrics, so it is escaped: the table compiles
whatever the names hold (text outside ASCII is left as written, for the paper's input encoding).
"""

from __future__ import annotations

import re
from typing import Any

from xstash_plugin.config.text import elide
from xstash_plugin.report.rows import (
    PASSING,
    column_name,
    display_name,
    flatten,
    fmt,
    is_number,
    metric_columns,
    sweep_columns,
)

LATEX_SUFFIXES = (".tex",)
LATEX_METRICS = 4  # metric columns when none are asked for: a paper's table is narrow
LATEX_CELL_LIMIT = 60  # characters of a text cell (longer values are elided)
MISSING = "--"
DAGGER = "$^{\\dagger}$"
CI_METHODS = {"t": "Student t", "bootstrap": "bootstrap percentile"}

# One pass over the text (str.translate), so the backslashes an escape adds are never escaped
# again. ``<``, ``>`` and ``|`` are not special, but the default OT1 font encoding prints other
# glyphs for them in text.
_ESCAPES = str.maketrans(
    {
        "\\": "\\textbackslash{}",
        "&": "\\&",
        "%": "\\%",
        "$": "\\$",
        "#": "\\#",
        "_": "\\_",
        "{": "\\{",
        "}": "\\}",
        "~": "\\textasciitilde{}",
        "^": "\\textasciicircum{}",
        "<": "\\textless{}",
        ">": "\\textgreater{}",
        "|": "\\textbar{}",
    }
)
# Control characters (a newline or a blank line would end the table row or the paragraph).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")


def escape(text: str) -> str:
    """``text`` as LaTeX prints it literally, on one line.

    A cell that starts with ``[`` or ``*`` gets an empty group first: the ``\\\\`` that ends the
    row before (or a booktabs rule) would take it for its optional argument or its star."""
    text = elide(_CONTROL.sub(" ", text), LATEX_CELL_LIMIT).translate(_ESCAPES)
    return "{}" + text if text.startswith(("[", "*")) else text


def number(value: float, digits: int) -> str:
    """A number as math-mode LaTeX with ``digits`` digits after the point; scientific
    (``1.235\\times10^{6}``) only where fixed-point would be too long or show only zeros."""
    x = float(value)
    if abs(x) >= 1e6 or 0 < abs(x) < 10.0**-digits:
        return _scientific(f"{x:.{digits}e}")
    return f"{x:.{digits}f}"


def _scientific(text: str) -> str:
    """``1.5e-05`` as ``1.5\\times10^{-5}``; other text unchanged."""
    mantissa, sep, exponent = text.partition("e")
    return f"{mantissa}\\times10^{{{int(exponent)}}}" if sep else text


def _plain(value: Any) -> str:
    """A swept value as written in the config: numbers in math mode (a true minus sign)."""
    if is_number(value):
        return f"${_scientific(fmt(value))}$"
    return MISSING if value is None else escape(fmt(value))


def shown_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate and ordinary rows; seed rows (with a ``group``) are summed up by their
    aggregate."""
    return [row for row in rows if "group" not in row]


def _direction_of_expected(expected: Any) -> str | None:
    text = str(expected or "").lstrip()
    if text.startswith(">"):
        return "max"
    if text.startswith("<"):
        return "min"
    return None


def directions(rows: list[dict[str, Any]], metrics: list[str]) -> dict[str, str]:
    """Which way is better per metric: the rows' ``direction`` maps, else the verdicts'
    ``>``/``<`` expectations. Rows that disagree leave the metric without a direction (no bold)
    rather than letting the first row decide."""
    stated: dict[str, set[str]] = {m: set() for m in metrics}
    expected: dict[str, set[str]] = {m: set() for m in metrics}
    for row in rows:
        for metric, way in (row.get("direction") or {}).items():
            if metric in stated and way in ("max", "min"):
                stated[metric].add(way)
        for verdict in row.get("verdicts") or []:
            way = _direction_of_expected(verdict.get("expected"))
            if verdict.get("metric") in expected and way:
                expected[verdict["metric"]].add(way)
    out: dict[str, str] = {}
    for metric in metrics:
        ways = stated[metric] or expected[metric]
        if len(ways) == 1:
            out[metric] = next(iter(ways))
    return out


def _cell(row: dict[str, Any], metric: str, flat: dict[str, Any], digits: int) -> tuple[Any, str]:
    """(the value compared for the best, the math/text of the cell without ``$``) of one metric:
    an aggregate's mean and half CI width, or an ordinary row's value."""
    stats = (row.get("stats") or {}).get(metric) if row.get("kind") == "aggregate" else None
    if isinstance(stats, dict) and is_number(stats.get("mean")):
        mean: Any = stats["mean"]
        low: Any = stats.get("ci_low")
        high: Any = stats.get("ci_high")
        if is_number(low) and is_number(high):
            return mean, f"{number(mean, digits)} \\pm {number((high - low) / 2, digits)}"
        return mean, number(mean, digits)
    value: Any = flat.get(metric)
    if isinstance(value, int) and is_number(value) and abs(value) < 1e6:
        return value, str(value)
    if is_number(value):
        return value, number(value, digits)
    return None, MISSING if value is None else escape(fmt(value))


def _best(values: list[Any], texts: list[str], passing: list[bool], way: str | None) -> set[int]:
    """Rows to bold in one column: the best number among the rows that passed, and every row
    that shows the same text (a tie as the reader sees it, after rounding)."""
    candidates = [i for i, v in enumerate(values) if passing[i] and v is not None]
    if way is None or not candidates:
        return set()
    pick = max if way == "max" else min
    best = texts[pick(candidates, key=lambda i: float(values[i]))]
    return {i for i in candidates if texts[i] == best}


def _metric_column(
    rows: list[dict[str, Any]],
    flats: list[dict[str, Any]],
    metric: str,
    way: str | None,
    digits: int,
) -> tuple[list[str], bool]:
    """The cells of one metric column and whether it holds only numbers (``r``) or text (``l``).
    ``flats`` are the rows' flattened metrics (flattened once per row, not once per column)."""
    cells = [_cell(row, metric, flat, digits) for row, flat in zip(rows, flats, strict=True)]
    values = [value for value, _ in cells]
    texts = [text for _, text in cells]
    passing = [row.get("status") in PASSING for row in rows]
    bold = _best(values, texts, passing, way)
    out = []
    for i, (value, text) in enumerate(cells):
        if value is None:
            out.append(text)
        else:
            out.append(f"$\\mathbf{{{text}}}$" if i in bold else f"${text}$")
    numeric = all(value is not None or text == MISSING for value, text in cells)
    return out, numeric


def _name(row: dict[str, Any]) -> str:
    """The experiment's name (the aggregate id ends in ``::mean``, not in the name)."""
    if row.get("experiment"):
        return str(row["experiment"])
    return display_name({"id": str(row.get("id", "")).removesuffix("::mean")})


def _columns(
    rows: list[dict[str, Any]], metrics: list[str], digits: int
) -> tuple[list[str], str, list[list[str]]]:
    """Header, column spec and body cells (column by column, then turned into rows)."""
    swept = sweep_columns(rows)
    header = ["experiment", *swept, *(column_name(m, ("experiment", *swept)) for m in metrics)]
    spec = ["l"]
    columns = [
        [escape(_name(row)) + ("" if row.get("status") in PASSING else DAGGER) for row in rows]
    ]
    for key in swept:
        values = [(row.get("point") or {}).get(key) for row in rows]
        columns.append([_plain(value) for value in values])
        spec.append("r" if all(v is None or is_number(v) for v in values) else "l")
    ways = directions(rows, metrics)
    flats = [flatten(row.get("metrics") or {}) for row in rows]
    for metric in metrics:
        cells, numeric = _metric_column(rows, flats, metric, ways.get(metric), digits)
        columns.append(cells)
        spec.append("r" if numeric else "l")
    body = [list(cells) for cells in zip(*columns, strict=True)] if rows else []
    return [escape(name) for name in header], "".join(spec), body


def _method(row: dict[str, Any]) -> str:
    method = str(row.get("ci_method") or "t")
    return CI_METHODS.get(method, escape(method))


def _level(row: dict[str, Any]) -> str:
    """``95\\%`` from ``confidence: 0.95`` (empty when the row does not say)."""
    confidence: Any = row.get("confidence")
    return f"{float(confidence) * 100:g}\\%" if is_number(confidence) else ""


def _interval(aggregates: list[dict[str, Any]]) -> str:
    """``the 95\\% confidence interval (Student t)``. Where the experiments use different
    levels or methods, each is named with its experiments: one method claimed for every cell
    would be wrong for some."""
    groups: dict[tuple[str, str], dict[str, None]] = {}
    for row in aggregates:
        groups.setdefault((_level(row), _method(row)), {})[escape(_name(row))] = None
    same_level = len({level for level, _ in groups}) == 1
    parts = []
    for (level, method), names in groups.items():
        label = method if same_level else f"{level or '?'} {method}"
        parts.append(label if len(groups) == 1 else f"{label}: {', '.join(names)}")
    shared = next(iter(groups))[0] if same_level else ""
    return " ".join(filter(None, ["the", shared, f"confidence interval ({'; '.join(parts)})"]))


def _without_interval(aggregates: list[dict[str, Any]], metrics: list[str]) -> bool:
    """Whether a shown aggregate cell has a mean but no interval (fewer than 2 seeds)."""
    for row in aggregates:
        for metric in metrics:
            stats = (row.get("stats") or {}).get(metric) or {}
            if is_number(stats.get("mean")) and not is_number(stats.get("ci_low")):
                return True
    return False


def ci_note(rows: list[dict[str, Any]], metrics: list[str]) -> str | None:
    """What the ``\\pm`` means, from the aggregates' ``ci_method``, ``confidence`` and ``n``."""
    aggregates = [row for row in rows if row.get("kind") == "aggregate"]
    if not aggregates:
        return None
    counts = sorted({int(row["n"]) for row in aggregates if is_number(row.get("n"))})
    seeds = ""
    if counts:
        span = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}--{counts[-1]}"
        seeds = f" over {span} {'seed' if counts == [1] else 'seeds'}"
    note = f"Mean $\\pm$ half-width of {_interval(aggregates)}{seeds}."
    if _without_interval(aggregates, metrics):
        note += " A mean without $\\pm$ comes from fewer than 2 seeds (no interval)."
    return note


def failed_note(rows: list[dict[str, Any]]) -> str | None:
    """The dagger's meaning, with the statuses it stands for."""
    statuses = dict.fromkeys(
        str(row.get("status")) for row in rows if row.get("status") not in PASSING
    )
    if not statuses:
        return None
    listed = escape(", ".join(statuses))
    return f"{DAGGER} Did not pass ({listed}): shown, but never compared for the best value."


def render_latex(
    rows: list[dict[str, Any]], metrics: list[str] | None = None, digits: int = 3
) -> str:
    """A complete booktabs ``table`` float of ``rows`` (the result rows of a session).

    ``metrics`` are dotted metric names (default: those with expectations first, then the
    others, at most :data:`LATEX_METRICS`); ``digits`` digits follow the decimal point."""
    if digits < 0:
        raise ValueError(f"digits must be >= 0, not {digits}")
    shown = shown_rows(rows)
    names = list(metrics) if metrics is not None else metric_columns(shown, LATEX_METRICS)
    header, spec, body = _columns(shown, names, digits)
    lines = [
        "% Results table written by xstash; needs \\usepackage{booktabs} in the preamble.",
        "\\begin{table}[htbp]",
        "  \\centering",
        "  \\caption{Experiment results.}",
        "  \\label{tab:xstash}",
        f"  \\begin{{tabular}}{{{spec}}}",
        "    \\toprule",
        "    " + " & ".join(header) + " \\\\",
        "    \\midrule",
        *("    " + " & ".join(cells) + " \\\\" for cells in body),
        "    \\bottomrule",
        "  \\end{tabular}",
    ]
    notes = [note for note in (ci_note(shown, names), failed_note(shown)) if note]
    if notes:
        lines.append("  \\par\\smallskip")
        lines.extend(f"  {{\\footnotesize {note}\\par}}" for note in notes)
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"
