"""The adversarial corpus: every hostile input in ``tests/corpus/``, each in a real pytest run.

A case is one file in ``tests/corpus/`` (or, for inputs too large or too binary to commit, a
generator below) plus one entry in ``tests/corpus/cases.yaml`` saying where the file goes and
what xstash promises for it. Adding a case is adding a file and an entry; nothing here changes.

Every case runs in its own repository (a pytester folder): ``configs/meta.yaml`` with the tools
``good`` and ``t``, ``configs/good.yaml`` beside the hostile file, and a second, independent
configs root ``lab2/``. Whatever the case, the run must finish within :data:`TIMEOUT` seconds
(a subprocess timeout), print no traceback and no raw control character, write nothing outside
its folder (nor ``/tmp/pwned-xstash-corpus``), and still collect the good configs.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import HYDRA_MAIN, Project

from xstash_plugin.config.interpolations import MAX_INTERPOLATIONS
from xstash_plugin.config.yamllimits import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = CORPUS / "cases.yaml"
PWNED = Path("/tmp/pwned-xstash-corpus")  # what the hostile cases try to create
TIMEOUT = 60  # seconds for any one run; a hang is a failure, never a wait
PLAIN_MAIN = "print('ran')\n"
BAD_CONFIG = "tool: t\nexperiment: bad\n"  # the experiment of a meta.yaml case
# Characters that must never reach the terminal raw (newline and tab are layout).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
OUTCOMES = ("error", "accepted", "not-collected", "usage", "passes", "fails")
PLACES = ("config", "meta", "no-meta", "script", "metrics")
# Tool 't' of a metrics case: copies the input (at the repository's top) into its run
# directory as metrics.json and exits 0; the case is about xstash's reaction to the file.
COPIER = """\
import shutil, sys
run_dir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("hydra.run.dir="))
shutil.copyfile("../../metrics_input", run_dir.strip("'") + "/metrics.json")
print("copied")
"""
MAX_OUTPUT = 200_000  # characters of pytest output for a metrics case, however big the file
KEYS = {
    "name",
    "file",
    "generate",
    "as",
    "path",
    "link",
    "symlinks",
    "config",
    "args",
    "pytest_args",
    "expect",
    "scope",
    "line",
    "what",
    "fix",
    "collects",
    "seen",
    "seen_each",
    "record",
    "note",
}


# --- generators: inputs that are not committed -------------------------------------------


def _filled(head: bytes, size: int, tail: bytes) -> Iterator[bytes]:
    """``head``, 'x' up to ``size`` bytes in all, and ``tail``, in 1 MiB chunks: a big input
    never sits in this process's memory (its peak RSS would leak into later tests' children)."""
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        yield b"x" * min(left, 2**20)
        left -= 2**20
    yield tail


def _interpolations_in_one_string() -> Iterator[bytes]:
    """2,000,000 '${a}' in one 8 MB string: minutes of OmegaConf parsing, were it not bounded."""
    yield b"tool: t\nexperiment: bad\na: 1\nx: '"
    for _ in range(20):
        yield b"${a}" * 100_000
    yield b"'\n"


def _deep(levels: int, close: bool = True) -> bytes:
    """An experiment whose key ``x`` holds ``levels`` nested lists (the top level is one more)."""
    inner = "[" * levels + ("]" * levels if close else "")
    return f"tool: t\nexperiment: bad\nx: {inner}\n".encode()


def _nodes(values: int) -> bytes:
    """An experiment of exactly ``values`` YAML values: the mapping, 3 keys, 2 names, the list
    and its items."""
    items = values - 7
    return ("tool: t\nexperiment: many\nx: [" + ",".join("0" * items) + "]\n").encode()


def _deep_at_limit() -> bytes:
    """MAX_DEPTH levels in all (the top-level mapping is the first): accepted, and both
    xstash's interpolation check (OmegaConf) and the tool's Hydra must read and resolve it."""
    inner = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    return f"tool: t\nexperiment: deep\nx: {inner}\ny: ${{x}}\n".encode()


# name -> the input's bytes (in chunks)
GENERATORS: dict[str, Callable[[], Iterable[bytes]]] = {
    # 50 MiB of valid YAML: refused unread, by size.
    "big_50mb": lambda: _filled(b'tool: t\nexperiment: bad\ndata: "', 50 * 2**20, b'"\n'),
    # One byte over the size limit (a long comment), and exactly at it.
    "over_size_limit": lambda: _filled(b"tool: t\nexperiment: bad\n#", MAX_FILE_BYTES + 1, b"\n"),
    "at_size_limit": lambda: _filled(b'tool: t\nexperiment: big\ndata: "', MAX_FILE_BYTES, b'"\n'),
    # A PNG header (with NUL bytes) and seeded random bytes.
    "binary_png": lambda: [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        random.Random(0).randbytes(4096),
    ],
    # Random bytes without NUL: not UTF-8.
    "random_bytes": lambda: [random.Random(1).randbytes(4096).replace(b"\x00", b"\x01")],
    # 10,000 levels of '[' (closed, and never closed).
    "deep_10000": lambda: [_deep(10_000)],
    "deep_10000_unclosed": lambda: [_deep(10_000, close=False)],
    # 1,000 levels of block mappings (indentation; 10,000 would be a 50 MB file).
    "deep_block_1000": lambda: [
        b"tool: t\nexperiment: bad\n",
        *(b" " * i + b"a:\n" for i in range(1_000)),
    ],
    # One level more than the limit, and exactly the limit (run by a real Hydra tool).
    "deep_over_limit": lambda: [_deep(MAX_DEPTH)],
    "deep_at_limit": lambda: [_deep_at_limit()],
    # One value more than the limit, and exactly the limit.
    "nodes_over_limit": lambda: [_nodes(MAX_NODES + 1)],
    "nodes_at_limit": lambda: [_nodes(MAX_NODES)],
    # Interpolations: one more than the limit in a list, and 2 million in one string.
    "interpolations_over_limit": lambda: [
        b"tool: t\nexperiment: bad\na: 1\nx: [" + b"'${a}'," * MAX_INTERPOLATIONS + b"'${a}']\n"
    ],
    "interpolations_in_one_string": _interpolations_in_one_string,
    # Metrics: 100,000 levels of nesting (RecursionError in json), 20,000 keys, a 5 MB value.
    "metrics_deep": lambda: [b'{"a": ' * 100_000, b"1", b"}" * 100_000],
    "metrics_many_keys": lambda: [json.dumps({f"m{i:05d}": i for i in range(20_000)}).encode()],
    "metrics_huge_value": lambda: _filled(b'{"accuracy": 0.97, "log": "', 5_000_000, b'"}'),
}


# --- the manifest -------------------------------------------------------------------------


def _load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["cases"]
    return cases


CASES = _load_cases()


def test_manifest_is_complete_and_consistent() -> None:
    """Every corpus file belongs to exactly one case, every generator is used, and every entry
    is well formed: a file added without an entry (or the reverse) fails here."""
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    files = {
        p.relative_to(CORPUS).as_posix()
        for p in CORPUS.rglob("*")
        if p.is_file() and p != MANIFEST and "__pycache__" not in p.parts
    }
    used = [case["file"] for case in CASES if case.get("file")]
    assert sorted(used) == sorted(set(used)), "each corpus file is one case"
    assert set(used) == files, f"without a case: {files - set(used)}; absent: {set(used) - files}"
    assert not any(Path(f).name == "meta.yaml" for f in files), (
        "never name a corpus file meta.yaml: it would make tests/corpus a configs root"
    )
    generated = {case["generate"] for case in CASES if case.get("generate")}
    assert generated == set(GENERATORS)
    for case in CASES:
        where = f"case {case['name']}"
        assert set(case) <= KEYS, f"{where}: unknown keys {set(case) - KEYS}"
        assert case["as"] in PLACES, where
        assert case["expect"] in OUTCOMES, where
        sources = sum(bool(case.get(k)) for k in ("file", "generate", "link"))
        assert sources == (0 if case["as"] == "script" and not case.get("path") else 1), where
        if case["expect"] == "error":
            assert "line" in case and case.get("what") and case.get("fix"), where
        if case["expect"] == "usage":
            assert case["as"] == "script" and case.get("what"), where
        if case["as"] == "metrics" or case["expect"] == "fails":
            assert case["as"] == "metrics" and case["expect"] in ("passes", "fails"), where
            assert case.get("record"), f"{where}: say what its run record must hold"


# --- running a case -----------------------------------------------------------------------


def _write_input(path: Path, case: dict[str, Any]) -> None:
    """Write the case's input (its corpus file, or its generator's output) to ``path``."""
    if not case.get("generate"):
        path.write_bytes((CORPUS / case["file"]).read_bytes())
        return
    with path.open("wb") as out:
        for chunk in GENERATORS[case["generate"]]():
            out.write(chunk)


def _arg(value: Any) -> str:
    """A script argument: a string, or ``{repeat: TEXT, times: N}``."""
    if isinstance(value, dict):
        return str(value["repeat"]) * int(value["times"])
    return str(value)


def _build(project: Project, case: dict[str, Any], hydra: str | None) -> str:
    """Lay out the repository for ``case``; returns the relative path of the hostile config."""
    root = project.root
    place = case["as"]
    target = case.get("path", "configs/bad.yaml")
    project.tool("good", PLAIN_MAIN, env="system", deps=None)
    if place == "metrics":
        project.tool("t", COPIER, env="system", deps=None)
        _write_input(root / "metrics_input", case)
        (root / target).write_text(case.get("config", BAD_CONFIG), encoding="utf-8")
    elif hydra is not None:
        project.tool("t", HYDRA_MAIN, env=hydra, deps=None)
    else:
        project.tool("t", PLAIN_MAIN, env="system", deps=None)
    project.config("good.yaml", "tool: good\nexperiment: good\n")
    project.write("lab2/tools/other/src/main.py", PLAIN_MAIN)
    project.write(
        "lab2/configs/meta.yaml",
        "tools:\n  other: {path: tools/other, entrypoint: src/main.py, env: system}\n",
    )
    project.write("lab2/configs/other.yaml", "tool: other\nexperiment: other\n")
    if place == "metrics":
        pass  # laid out above
    elif place == "meta":
        _write_input(root / "configs" / "meta.yaml", case)
        (root / target).write_text(case.get("config", BAD_CONFIG), encoding="utf-8")
    elif place in ("config", "no-meta", "script"):
        if place == "no-meta":
            (root / "configs" / "meta.yaml").unlink()
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.get("link"):
            path.symlink_to(case["link"])
        elif case.get("file") or case.get("generate"):
            _write_input(path, case)
    for link, points_to in (case.get("symlinks") or {}).items():
        path = root / link
        if path.is_symlink() or path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(points_to)
    return str(target)


def _collected(out: str) -> list[str]:
    """Node ids listed by ``--collect-only -q`` (or reported by ``-v``)."""
    ids = []
    for line in out.splitlines():
        found = re.match(r"^((?:configs|lab2)/\S.*?::\S+)(?: (?:PASSED|FAILED|ERROR).*)?$", line)
        if found and not re.search(r":\d+: ", line):
            ids.append(found[1])
    return ids


def _sections(out: str) -> dict[str, str]:
    """The text of each 'ERROR collecting <path>' section, by path."""
    found: dict[str, str] = {}
    headers = list(re.finditer(r"^_+ ERROR collecting (.+?) _+$", out, re.M))
    for header in headers:
        rest = out[header.end() :]
        end = re.search(r"^(_{3,} |={3,} )", rest, re.M)
        found[header[1]] = rest[: end.start()] if end else rest
    return found


def _assert_message(section: str, file: str, case: dict[str, Any]) -> None:
    """A message ``<.../file>[:line]: what`` with every fragment of ``what``, and the fix."""
    what = case["what"] if isinstance(case["what"], list) else [case["what"]]
    line = case["line"]
    messages = re.findall(r"^\s*(\S.*?\.ya?ml)(?::(\d+))?: (.*)$", section, re.M)
    matching = [
        text
        for path, at, text in messages
        if path.endswith(file)
        and (int(at) if at else None) == line
        and all(part in text for part in what)
    ]
    assert matching, f"no '{file}:{line}: ' message with {what} in:\n{section}"
    assert "fix: " in section and case["fix"] in section, f"no fix {case['fix']!r} in:\n{section}"


def _seen(project: Project, config: str) -> list[dict[str, Any]]:
    stem = Path(config).relative_to("configs").with_suffix("").as_posix()
    runs = project.run_dirs(stem)
    assert runs, f"no run directory for {config}"
    return [json.loads((run / "seen.json").read_text())["cfg"] for run in runs]


def _run_script(project: Project, case: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    scripts = project.root / "scripts"
    shutil.copytree(REPO / "scripts", scripts)
    return subprocess.run(
        [sys.executable, str(scripts / "run_experiment"), *map(_arg, case["args"])],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _no_escape(text: str, what: str) -> None:
    assert "Traceback" not in text, f"traceback in {what}:\n{text}"
    raw = RAW_CONTROL.search(text)
    assert raw is None, f"raw control character {raw[0]!r} in {what}:\n{text!r}"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_corpus_case(
    case: dict[str, Any],
    project: Project,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for link in [case.get("link"), *(case.get("symlinks") or {}).values()]:
        if link and str(link).startswith("/") and not Path(link).exists():
            pytest.skip(f"{link} does not exist on this system")
    assert not PWNED.exists(), f"{PWNED} exists before the case: remove it and rerun"
    runs = case["expect"] in ("passes", "fails")
    metrics = case["as"] == "metrics"
    hydra = str(request.getfixturevalue("hydra_python")) if runs and not metrics else None
    root = project.root
    (root / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    config = _build(project, case, hydra)
    around = sorted(p.name for p in root.parent.iterdir())

    args = ["-p", "no:cacheprovider", *(case.get("pytest_args") or [])]
    args += ["-v"] if runs else ["--collect-only", "-q"]
    if metrics:
        args += ["--junitxml=r.xml", "--xstash-report=r.json"]
    result = project.pytester.runpytest_subprocess(*args, timeout=TIMEOUT)
    out = result.stdout.str()
    _no_escape(out + result.stderr.str(), "pytest's output")
    script = _run_script(project, case) if case["as"] == "script" else None

    # Nothing escaped the repository's folder.
    assert not PWNED.exists(), f"the case created {PWNED}"
    assert sorted(p.name for p in root.parent.iterdir()) == around, "wrote beside its folder"

    # The good configs still collect: the independent root always, the neighbour unless the
    # whole meta.yaml of its root is broken (or missing).
    collected = _collected(out)
    assert "lab2/configs/other.yaml::other" in collected, out
    neighbour_fails = case.get("scope") == "registry" or case["as"] == "no-meta"
    if not neighbour_fails:
        assert "configs/good.yaml::good" in collected, out

    sections = _sections(out)
    expect = case["expect"]
    if expect == "error":
        failing = {config} | ({"configs/good.yaml"} if neighbour_fails else set())
        assert set(sections) == failing, out
        where = "configs/meta.yaml" if case["as"] == "meta" else config
        _assert_message(sections[config], where, case)
        assert result.ret == pytest.ExitCode.INTERRUPTED, out
    elif expect == "fails":
        assert not sections, out
        assert "configs/good.yaml::good PASSED" in out, out
        assert f"{config}::bad FAILED" in out, out
        for part in case["what"] if isinstance(case["what"], list) else [case["what"]]:
            assert part in out, f"{part!r} not in:\n{out}"
        assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    elif expect in ("accepted", "passes"):
        assert not sections, out
        for node in case.get("collects") or []:
            assert node in collected, out
        assert result.ret == pytest.ExitCode.OK, out
    elif expect == "not-collected":
        assert not sections, out
        assert not any(node.startswith(config) for node in collected), out
        assert result.ret == pytest.ExitCode.OK, out
    elif expect == "usage":
        assert script is not None
        _no_escape(script.stdout + script.stderr, "the script's output")
        assert script.returncode == 1, script.stdout + script.stderr
        for part in case["what"] if isinstance(case["what"], list) else [case["what"]]:
            assert part in script.stderr, script.stderr
        assert "$ pytest" not in script.stdout, "the script started pytest"

    if metrics:
        _assert_metrics_run(project, config, case, out)
    elif runs:
        seen = _seen(project, config)
        for key, value in (case.get("seen") or {}).items():
            assert all(cfg[key] == value for cfg in seen), (key, value, seen)
        for key, values in (case.get("seen_each") or {}).items():
            assert sorted(cfg[key] for cfg in seen) == sorted(values), (key, seen)


def _strict_json(path: Path) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _holds(got: Any, want: Any, where: str) -> None:
    """``got`` holds ``want``: a mapping holds each wanted key (recursively), a string holds
    the wanted fragment, anything else is equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where} = {got!r}, wanted a mapping"
        for key, value in want.items():
            assert key in got, f"{where} has no {key!r}: {sorted(got)}"
            _holds(got[key], value, f"{where}[{key!r}]")
    elif isinstance(want, str) and isinstance(got, str):
        assert want in got, f"{where} = {got!r}, wanted {want!r} in it"
    else:
        assert got == want and type(got) is type(want), f"{where} = {got!r}, wanted {want!r}"


def _assert_metrics_run(project: Project, config: str, case: dict[str, Any], out: str) -> None:
    """A metrics case's run ends with a final record (strict JSON, holding ``record``), the
    report and JUnit XML agree, and no output grows with the metrics file."""
    assert len(out) < MAX_OUTPUT, f"{len(out):,} characters of output"
    stem = Path(config).relative_to("configs").with_suffix("").as_posix()
    (run_dir,) = project.run_dirs(stem)
    record = _strict_json(run_dir / "xstash.json")
    assert record["status"] == ("passed" if case["expect"] == "passes" else "failed"), record
    assert record["ended"] >= record["started"]
    _holds(record, case["record"], "record")
    rows = {row["experiment"]: row for row in _strict_json(project.root / "r.json")}
    assert rows["bad"]["status"] == record["status"]
    xml = project.root / "r.xml"
    assert xml.stat().st_size < MAX_OUTPUT
    cases = {c.get("name"): c for c in ET.parse(xml).iter("testcase")}
    assert (cases["bad"].find("failure") is not None) == (case["expect"] == "fails")
    assert (project.root / "r.json").stat().st_size < MAX_OUTPUT
    copied = (run_dir / "metrics.json").stat().st_size
    assert copied == (project.root / "metrics_input").stat().st_size, "the file is left whole"
