"""The LaTeX table for papers (report/latex.py), on hand-made rows that follow the seeds contract.

The golden file tests/data/golden_table.tex pins the whole output for 3 learning rates x 2
metrics; after a deliberate change, regenerate it with ``python tests/test_latex.py`` and read
the diff. Where ``pdflatex`` is on PATH (Debian: ``apt-get install -y --no-install-recommends
texlive-latex-base texlive-latex-recommended``), the tables are compiled too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xstash_plugin.report.latex import LATEX_SUFFIXES, escape, render_latex

GOLDEN = Path(__file__).parent / "data" / "golden_table.tex"
UNESCAPED_AMP = re.compile(r"(?<!\\)&")


def aggregate(
    lr: float,
    stats: dict[str, tuple[float, float | None]],
    *,
    status: str = "passed",
    n: int = 5,
    direction: dict[str, str] | None = None,
    verdicts: list[dict[str, Any]] | None = None,
    ci_method: str = "t",
    experiment: str = "lr_sweep",
) -> dict[str, Any]:
    """An aggregate row; ``stats`` maps metric -> (mean, half CI width or None when n < 2)."""
    return {
        "id": f"configs/x.yaml::{experiment}[lr={lr}]::mean",
        "kind": "aggregate",
        "experiment": experiment,
        "config": "configs/x.yaml",
        "tool": "trainer",
        "tags": [],
        "point": {"lr": lr},
        "status": status,
        "seed_key": "seed",
        "seeds": list(range(n)),
        "n": n,
        "ci_method": ci_method,
        "confidence": 0.95,
        "stats": {
            metric: {
                "n": n,
                "mean": mean,
                "std": None if half is None else half,
                "sem": None if half is None else half / 2,
                "ci_low": None if half is None else mean - half,
                "ci_high": None if half is None else mean + half,
                "min": mean,
                "max": mean,
            }
            for metric, (mean, half) in stats.items()
        },
        "metrics": {metric: mean for metric, (mean, _) in stats.items()},
        "verdicts": verdicts or [],
        "direction": direction if direction is not None else {},
        "seed_runs": [],
        "incomplete": None,
        "duration": None,
        "run_dir": None,
        "exit_code": None,
        "order": 0,
    }


def ordinary(
    name: str, metrics: dict[str, Any], status: str = "passed", **extra: Any
) -> dict[str, Any]:
    """A row of an experiment without seeds."""
    return {
        "id": f"configs/o.yaml::{name}",
        "experiment": name,
        "config": "configs/o.yaml",
        "tool": "t",
        "status": status,
        "metrics": metrics,
        "verdicts": [],
        **extra,
    }


def golden_rows() -> list[dict[str, Any]]:
    """3 learning rates x 2 metrics (accuracy: max, loss: min), with their seed rows."""
    direction = {"accuracy": "max", "loss": "min"}
    rows = []
    for lr, acc, loss in (
        (0.1, (0.912, 0.011), (0.31, 0.02)),
        (0.01, (0.934, 0.0084), (0.2512, 0.015)),
        (0.001, (0.871, 0.02), (0.42, 0.031)),
    ):
        agg = aggregate(lr, {"accuracy": acc, "loss": loss}, direction=direction)
        seeds = [
            {
                **ordinary("lr_sweep", {"accuracy": 0.123 + seed, "loss": 0.456}),
                "point": {"lr": lr, "seed": seed},
                "seed": seed,
                "group": agg["id"],
            }
            for seed in range(2)
        ]
        rows.extend([*seeds, agg])
    return rows


def body_lines(text: str) -> list[str]:
    """The table's header and body lines (between ``\\toprule`` and ``\\bottomrule``)."""
    lines = [line.strip() for line in text.splitlines()]
    return lines[lines.index("\\toprule") + 1 : lines.index("\\bottomrule")]


def cells(text: str) -> list[list[str]]:
    """Header and body cells (``\\midrule`` left out)."""
    return [
        [cell.strip() for cell in UNESCAPED_AMP.split(line.removesuffix("\\\\"))]
        for line in body_lines(text)
        if line != "\\midrule"
    ]


def column(text: str, name: str) -> list[str]:
    header, *body = cells(text)
    return [row[header.index(name)] for row in body]


def is_bold(cell: str) -> bool:
    return cell.startswith("$\\mathbf{")


def test_structure_booktabs_float_and_consistent_columns() -> None:
    text = render_latex(golden_rows())
    lines = text.splitlines()
    assert lines[0].startswith("%") and "\\usepackage{booktabs}" in lines[0]
    for part in (
        "\\begin{table}",
        "\\centering",
        "\\caption{",
        "\\label{tab:xstash}",
        "\\toprule",
        "\\midrule",
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
    ):
        assert part in text, part
    spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", text)
    assert spec is not None and spec[1] == "lrrr"  # experiment, lr, accuracy, loss
    rows = [line for line in body_lines(text) if line != "\\midrule"]
    assert len(rows) == 4  # header + 3 aggregates (the seed rows are left out)
    for line in rows:
        assert line.endswith("\\\\")
        assert len(UNESCAPED_AMP.findall(line)) == len(spec[1]) - 1, line
    assert cells(text)[0] == ["experiment", "lr", "accuracy", "loss"]
    assert (
        "{\\footnotesize Mean $\\pm$ half-width of the 95\\% confidence interval (Student t)"
        " over 5 seeds." in text
    )


def test_aggregate_cells_are_mean_pm_half_ci_width() -> None:
    text = render_latex([aggregate(0.1, {"accuracy": (0.9123, 0.0114)})])
    assert column(text, "accuracy") == ["$0.912 \\pm 0.011$"]
    # Half of (ci_high - ci_low), not the std.
    row = aggregate(0.1, {"acc": (0.5, 0.1)})
    row["stats"]["acc"].update(ci_low=0.2, ci_high=0.6, std=0.9)
    assert column(render_latex([row]), "acc") == ["$0.500 \\pm 0.200$"]


def test_bold_best_per_column_for_max_and_min_metrics() -> None:
    text = render_latex(golden_rows())
    accuracy, loss = column(text, "accuracy"), column(text, "loss")
    assert [is_bold(c) for c in accuracy] == [False, True, False]  # max: 0.934
    assert [is_bold(c) for c in loss] == [False, True, False]  # min: 0.251
    assert accuracy[1] == "$\\mathbf{0.934 \\pm 0.008}$"
    assert loss[0] == "$0.310 \\pm 0.020$"


def test_bold_direction_from_verdicts_when_no_row_says() -> None:
    low = {"metric": "err", "expected": "<= 0.5", "ok": True}
    high = {"metric": "acc", "expected": "> 0.1", "ok": True}
    rows = [
        ordinary("a", {"err": 0.2, "acc": 0.7, "other": 3.0}, verdicts=[low, high]),
        ordinary("b", {"err": 0.1, "acc": 0.9, "other": 1.0}, verdicts=[low, high]),
    ]
    text = render_latex(rows)
    assert column(text, "err") == ["$0.200$", "$\\mathbf{0.100}$"]
    assert column(text, "acc") == ["$0.700$", "$\\mathbf{0.900}$"]
    assert column(text, "other") == ["$3.000$", "$1.000$"]  # no direction: nothing bold


def test_direction_map_wins_over_verdicts_and_disagreement_means_no_bold() -> None:
    verdict = {"metric": "x", "expected": ">= 0", "ok": True}
    rows = [
        ordinary("a", {"x": 1.0}, verdicts=[verdict], direction={"x": "min"}),
        ordinary("b", {"x": 2.0}, verdicts=[verdict]),
    ]
    assert column(render_latex(rows), "x") == ["$\\mathbf{1.000}$", "$2.000$"]
    rows[1]["direction"] = {"x": "max"}
    assert not any(is_bold(c) for c in column(render_latex(rows), "x"))


def test_non_directional_expectations_bold_nothing() -> None:
    verdict = {"metric": "x", "expected": "0.5 ± 0.1", "ok": True}
    rows = [ordinary("a", {"x": 0.45}, verdicts=[verdict]), ordinary("b", {"x": 0.5})]
    assert not any(is_bold(c) for c in column(render_latex(rows), "x"))


def test_ties_are_all_bold() -> None:
    direction = {"acc": "max"}
    rows = [
        aggregate(lr, {"acc": (mean, 0.01)}, direction=direction)
        for lr, mean in ((0.1, 0.9), (0.2, 0.9), (0.3, 0.8))
    ]
    assert [is_bold(c) for c in column(render_latex(rows), "acc")] == [True, True, False]
    # A tie as the reader sees it: equal after rounding to the digits shown.
    rows[1]["stats"]["acc"]["mean"] = 0.89996
    assert [is_bold(c) for c in column(render_latex(rows), "acc")] == [True, True, False]
    assert [is_bold(c) for c in column(render_latex(rows, digits=5), "acc")] == [True, False, False]


def test_failed_rows_are_never_bold_and_carry_a_dagger_explained_below() -> None:
    direction = {"acc": "max"}
    rows = [
        aggregate(0.1, {"acc": (0.99, 0.01)}, direction=direction, status="failed"),
        aggregate(0.2, {"acc": (0.90, 0.01)}, direction=direction),
        ordinary("plain", {"acc": 0.95}, status="error"),
        ordinary("again", {"acc": 0.5}, status="reused"),
    ]
    text = render_latex(rows)
    assert [is_bold(c) for c in column(text, "acc")] == [False, True, False, False]
    assert column(text, "experiment") == [
        "lr\\_sweep$^{\\dagger}$",
        "lr\\_sweep",
        "plain$^{\\dagger}$",
        "again",
    ]
    note = next(line for line in text.splitlines() if "Did not pass" in line)
    assert note.strip().startswith("{\\footnotesize $^{\\dagger}$")
    assert "(failed, error)" in note
    assert "Did not pass" not in render_latex(rows[1:2])


def test_escaping_in_cells_and_headers() -> None:
    rows = [
        ordinary("lr_sweep[lr=0.1]", {"a_b": "100%", "c&d": 1.0}),
        ordinary("[first]", {"a_b": "*star", "c&d": 2.0}),
    ]
    text = render_latex(rows)
    header, *body = cells(text)
    assert header == ["experiment", "a\\_b", "c\\&d"]
    assert body[0][:2] == ["lr\\_sweep[lr=0.1]", "100\\%"]
    # After ``\\`` a cell starting with [ or * would be read as the row end's argument or star.
    assert body[1][:2] == ["{}[first]", "{}*star"]
    assert re.search(r"\\begin\{tabular\}\{llr\}", text)  # text column l, numbers r
    assert escape("& % $ # _ { } ~ ^ \\") == (
        "\\& \\% \\$ \\# \\_ \\{ \\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{}"
    )
    assert escape("a\nb\r\n\tc") == "a b c"  # a blank line would end the table's paragraph


def test_digits_option_and_scientific_notation() -> None:
    rows = [aggregate(0.1, {"acc": (0.91234, 0.01129)})]
    # A half-width below 10**-digits would show only zeros: scientific instead.
    assert column(render_latex(rows, digits=1), "acc") == ["$0.9 \\pm 1.1\\times10^{-2}$"]
    assert column(render_latex(rows, digits=2), "acc") == ["$0.91 \\pm 0.01$"]
    assert column(render_latex(rows, digits=4), "acc") == ["$0.9123 \\pm 0.0113$"]
    assert column(render_latex(rows, digits=0), "acc") == ["$9\\times10^{-1} \\pm 1\\times10^{-2}$"]
    big = [
        ordinary("a", {"n": 1234567.0, "tiny": 0.00004, "zero": 0.0, "steps": 1000, "neg": -2.5})
    ]
    text = render_latex(big, metrics=["n", "tiny", "zero", "steps", "neg"])
    assert cells(text)[1][1:] == [
        "$1.235\\times10^{6}$",
        "$4.000\\times10^{-5}$",
        "$0.000$",
        "$1000$",
        "$-2.500$",
    ]
    with pytest.raises(ValueError, match="digits"):
        render_latex(rows, digits=-1)


def test_seed_rows_are_left_out() -> None:
    text = render_latex(golden_rows())
    assert "seed" not in cells(text)[0]  # the seed key is no column
    assert len(cells(text)) == 4
    assert "0.123" not in text and "0.456" not in text


def test_single_seed_aggregate_shows_the_mean_alone() -> None:
    rows = [
        aggregate(0.1, {"acc": (0.9, None)}, n=1, direction={"acc": "max"}),
        aggregate(0.2, {"acc": (0.8, 0.05)}, n=3),
    ]
    text = render_latex(rows)
    assert column(text, "acc") == ["$\\mathbf{0.900}$", "$0.800 \\pm 0.050$"]
    assert "over 1--3 seeds" in text
    assert "fewer than 2 seeds (no interval)" in text


def test_ci_note_names_the_methods() -> None:
    boot = [aggregate(0.1, {"acc": (0.9, 0.01)}, ci_method="bootstrap")]
    assert "95\\% confidence interval (bootstrap percentile) over 5 seeds" in render_latex(boot)
    mixed = [*boot, aggregate(0.1, {"acc": (0.9, 0.01)}, experiment="other")]
    assert (
        "95\\% confidence interval (bootstrap percentile: lr\\_sweep; Student t: other)"
        in render_latex(mixed)
    )
    assert "confidence interval" not in render_latex([ordinary("a", {"acc": 1.0})])


def test_metric_columns_default_and_chosen() -> None:
    row = ordinary(
        "a",
        {"m": {"a": 1, "b": 2}, "c": 3, "d": 4, "e": 5},
        verdicts=[{"metric": "e", "expected": "< 9", "ok": True}],
    )
    assert cells(render_latex([row]))[0] == ["experiment", "e", "m.a", "m.b", "c"]
    text = render_latex([row], metrics=["d", "m.b", "missing"])
    assert cells(text) == [["experiment", "d", "m.b", "missing"], ["a", "$4$", "$2$", "--"]]


def test_empty_rows_and_suffixes() -> None:
    assert LATEX_SUFFIXES == (".tex",)
    text = render_latex([])
    assert "\\begin{tabular}{l}" in text and cells(text) == [["experiment"]]


def test_golden_table() -> None:
    assert render_latex(golden_rows()) == GOLDEN.read_text(encoding="utf-8")


def hostile_rows() -> list[dict[str, Any]]:
    """Every character LaTeX treats specially, in names, swept values, metric names and text."""
    special = "& % $ # _ { } ~ ^ \\ < > | [x] *"
    return [
        {
            **ordinary("[lr_sweep]&#%", {"a_b": "100%", special: special, "flag": True}),
            "point": {"opt": special, "lr": -0.5},
        },
        {
            **ordinary("*star\n\nline", {"a_b": float("nan"), special: 1e-9}, status="failed"),
            "point": {"opt": "*", "lr": 1e-5},
        },
    ]


@pytest.mark.parametrize("which", ["golden", "hostile", "single_seed"])
def test_compiles_with_pdflatex(which: str, tmp_path: Path) -> None:
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip(
            "pdflatex is not on PATH (apt-get install -y --no-install-recommends "
            "texlive-latex-base texlive-latex-recommended)"
        )
    rows = {
        "golden": golden_rows(),
        "hostile": hostile_rows(),
        "single_seed": [aggregate(0.1, {"acc": (0.9, None)}, n=1, direction={"acc": "max"})],
    }[which]
    (tmp_path / "table.tex").write_text(render_latex(rows), encoding="utf-8")
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\input{table}"
        "\\end{document}\n"
    )
    done = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log or which == "hostile"


if __name__ == "__main__":  # regenerate the golden file after a deliberate change
    GOLDEN.write_text(render_latex(golden_rows()), encoding="utf-8")
    sys.stdout.write(GOLDEN.read_text(encoding="utf-8"))
