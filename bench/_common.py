"""What the bench scripts share: fixtures in a temp folder, timing, medians, result rows.

Every script builds its own repository (tools with a ``pyproject.toml`` pinning
``hydra-core==1.3.8``, ``configs/meta.yaml``, configs) in a temp folder, warms it up once (xstash's
first run builds each tool's uv environment, outside the timing), then runs both sides
alternately and prints one final line::

    B1 overhead (...): xstash 18.2 s, loop 17.9 s, ratio 1.02 (goal <= 1.05) - median of 3

``--json PATH`` also writes the result rows, which ``bench/run_all.py`` turns into the
BENCHMARKS.md table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Python's default is to cache bytecode; these machines set PYTHONDONTWRITEBYTECODE=1, which
# would make every process the benchmarks start (pytest, its workers, the shell side's tools)
# compile what has no .pyc yet, every time: an artefact of the machine, not of either side.
# Both sides run without it. (xstash's tool environments have their bytecode anyway: uv
# compiles it when xstash builds them.)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
PYTHON = sys.executable
HYDRA = "hydra-core==1.3.8"

PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["{hydra}"]

[tool.uv]
package = false
"""

# A trivial Hydra tool, as README's "Add a tool" writes one.
TRIVIAL_TOOL = """\
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    print(f"Running experiment: {HydraConfig.get().job.name}")
    print(f"Message: {cfg.get('message', 'No message')}")
    for key, value in cfg.get("params", {}).items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
"""

SLEEP_TOOL = """\
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    time.sleep(float(cfg.seconds))


if __name__ == "__main__":
    main()
"""

# Streams cfg.bytes bytes to stdout, 1 MiB at a time: the tool itself never holds more.
PRINT_TOOL = """\
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    line = b"x" * 1023 + b"\\n"
    chunk = line * 1024
    left = int(cfg.bytes)
    out = sys.stdout.buffer
    while left > 0:
        piece = chunk if left >= len(chunk) else chunk[:left]
        out.write(piece)
        left -= len(piece)
    out.flush()


if __name__ == "__main__":
    main()
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_repo(root: Path, tools: dict[str, str], meta_extra: dict[str, str] | None = None) -> Path:
    """A repository in ``root``: ``tools/<name>/src/main.py`` (+ pyproject.toml) for each tool,
    ``configs/meta.yaml`` registering them (``meta_extra[name]``: more YAML lines for the tool's
    entry, indented by 4), and a ``pytest.ini`` so the rootdir is ``root``.

    The ini turns compose at collection off: these benchmarks time runs (or, B3, collecting
    without the tools); what composing costs is B7's (bench/compose.py), which writes its own."""
    meta = ["tools:"]
    for name, source in tools.items():
        write(root / "tools" / name / "pyproject.toml", PYPROJECT.format(name=name, hydra=HYDRA))
        write(root / "tools" / name / "src" / "main.py", source)
        meta += [f"  {name}:", f"    path: tools/{name}", "    entrypoint: src/main.py"]
        meta += [f"    {line}" for line in (meta_extra or {}).get(name, "").splitlines()]
    write(root / "configs" / "meta.yaml", "\n".join(meta) + "\n")
    write(root / "pytest.ini", "[pytest]\nxstash_compose = off\n")
    return root


def register_tool(root: Path, name: str, folder: str, extra: str = "") -> None:
    """Add a registry entry ``name`` for the tool in ``tools/<folder>`` (same code, same env)."""
    meta = root / "configs" / "meta.yaml"
    lines = [f"  {name}:", f"    path: tools/{folder}", "    entrypoint: src/main.py"]
    lines += [f"    {line}" for line in extra.splitlines()]
    meta.write_text(meta.read_text() + "\n".join(lines) + "\n")


def pytest_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "pytest", *args]


class Failed(SystemExit):
    pass


def run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
    stdout: Any = subprocess.PIPE,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv``; its wall time and the process. Exits with its output when it fails."""
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode not in ok:
        raise Failed(
            f"{shlex.join(argv)} (in {cwd}) exited with {proc.returncode}:\n"
            f"{(proc.stdout or '')[-3000:]}\n{(proc.stderr or '')[-3000:]}"
        )
    return elapsed, proc


def alternate(
    sides: dict[str, Callable[[int], float]], repeat: int, unit: str = "s"
) -> dict[str, list[float]]:
    """Run every side ``repeat`` times, interleaved; the order rotates each round so that a
    slow drift of the machine does not always favour the same side."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(repeat):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(sides[name](i))
            print(f"  round {i + 1}/{repeat}: {name} {times[name][-1]:.2f} {unit}", flush=True)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def size_text(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


def spread(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def records(output_root: Path) -> list[dict[str, Any]]:
    """Every run record under ``output_root`` (``.xstash`` excluded), with ``run_dir`` added,
    sorted by config path and sweep point."""
    found = []
    for path in output_root.rglob("xstash.json"):
        if ".xstash" in path.relative_to(output_root).parts:
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        record["run_dir"] = str(path.parent)
        found.append(record)
    return sorted(found, key=lambda r: (r.get("config", ""), json.dumps(r.get("point"))))


def tool_environ(cwd: str) -> dict[str, str]:
    """The environment xstash gives a ``env: uv`` tool (see ``ExperimentItem._environment``)."""
    env = dict(os.environ)
    venv = Path(cwd) / ".venv"
    env.update(PYTHONUNBUFFERED="1", VIRTUAL_ENV=str(venv))
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Row:
    """One line of the BENCHMARKS.md table."""

    id: str
    what: str
    goal: str
    measured: str
    met: bool | None  # None: no goal, or skipped
    command: str
    note: str = ""


def finish(rows: list[Row], json_path: str | None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(r) for r in rows], indent=2))


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "-"}[met]


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each side (default 3)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the result rows as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (its path is shown)")
    return p


def command_line(script: str, args: argparse.Namespace, *extra: str) -> str:
    """How to reproduce: ``python bench/<script> <options as given>``."""
    return shlex.join(["python", f"bench/{script}", *extra, "--repeat", str(args.repeat)])


@contextmanager
def workdir(keep: bool, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"xstash-bench-{prefix}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def option_known(root: Path, option: str) -> bool:
    """Whether this pytest (with xstash) knows the command-line option ``option``."""
    _, proc = run(pytest_argv("--help"), root)
    return option in proc.stdout


def machine() -> dict[str, str]:
    """What BENCHMARKS.md says about the machine."""

    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
        except OSError:
            pass
        return "?"

    mem_kb = first("/proc/meminfo", "MemTotal").split()[0]
    os_name = first("/etc/os-release", "PRETTY_NAME").strip('"')
    versions = {}
    for name in ("pytest", "pytest-xdist", "uv"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "CPU": first("/proc/cpuinfo", "model name"),
        "RAM": f"{int(mem_kb) / 1024**2:.1f} GiB" if mem_kb.isdigit() else "?",
        "OS": f"{os_name}, Linux {platform.release()}",
        "Python": platform.python_version(),
        "pytest / pytest-xdist / uv": " / ".join(versions.values()),
        "tools": f"{HYDRA} (uv environments built by xstash)",
    }
