"""B3: ``pytest --collect-only`` of N configs with xstash, against the floor: pytest collecting
the same N YAML files as trivial items that only parse them with CSafeLoader.

The xstash side is a repository with one tool and N configs in folders of 100 (collecting
starts no tool and needs no environment). The floor is a copy of the same configs with a
10-line conftest.py (``pytest_collect_file`` -> one Item per YAML file, parsed with
``yaml.CSafeLoader``), run with ``-p no:xstash``. Both run ``pytest configs --collect-only -q``
alternately; prints the medians and the ratio xstash/floor.

``--profile`` then runs xstash's collection once more under cProfile
(``python -m cProfile -o ... -m pytest configs --collect-only -q``) and prints the top entries
of xstash_plugin by cumulative and by own time.

Besides wall time it prints the CPU time (user + sys) of each side, steadier on a busy machine.

    python bench/collection.py [--n 10000] [--repeat 3] [--profile] [--top 25]
"""

from __future__ import annotations

import pstats
import resource
import shutil
from pathlib import Path

from _common import (
    PYTHON,
    TRIVIAL_TOOL,
    Failed,
    Row,
    alternate,
    command_line,
    finish,
    make_repo,
    median,
    parser,
    pytest_argv,
    run,
    spread,
    workdir,
    write,
)

GOAL = 1.5
PER_FOLDER = 100

FLOOR_CONFTEST = """\
import pytest
import yaml


class YamlItem(pytest.Item):
    def runtest(self):
        pass


class YamlFile(pytest.File):
    def collect(self):
        with open(self.path, "rb") as handle:
            data = yaml.load(handle, Loader=yaml.CSafeLoader)
        yield YamlItem.from_parent(self, name=str(data["experiment"]))


def pytest_collect_file(file_path, parent):
    if file_path.suffix in (".yaml", ".yml") and file_path.name != "meta.yaml":
        return YamlFile.from_parent(parent, path=file_path)
"""


def config_text(i: int) -> str:
    # A realistic small experiment: orchestrator fields, an expectation, a nested tool config.
    return (
        f"tool: t\nexperiment: e{i:05d}\ndescription: experiment number {i}\n"
        f"tags: [bench, group{i % 7}]\nestimated_runtime: 5m\n"
        "xstash:\n  expect:\n    accuracy: '>= 0.5'\n"
        f"message: hello {i}\nparams:\n  learning_rate: 0.001\n  batch_size: 32\n  seed: {i}\n"
    )


def build(tmp: Path, n: int) -> tuple[Path, Path]:
    repo = make_repo(tmp / "repo", {"t": TRIVIAL_TOOL})
    for i in range(n):
        write(repo / "configs" / f"g{i // PER_FOLDER:03d}" / f"e{i:05d}.yaml", config_text(i))
    floor = tmp / "floor"
    shutil.copytree(repo / "configs", floor / "configs")
    write(floor / "pytest.ini", "[pytest]\n")
    write(floor / "conftest.py", FLOOR_CONFTEST)
    return repo, floor


def children_cpu() -> float:
    """CPU seconds (user + sys) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def collect(root: Path, n: int, *extra: str, cpu: list[float] | None = None) -> float:
    """Wall seconds of one ``--collect-only``; its CPU seconds (user + sys) go to ``cpu``."""
    before = children_cpu()
    elapsed, proc = run(pytest_argv("configs", "--collect-only", "-q", *extra), root)
    if cpu is not None:
        cpu.append(children_cpu() - before)
    last = proc.stdout.strip().splitlines()[-1]
    if not last.startswith(f"{n} test"):
        raise Failed(f"expected {n} tests collected in {root}, pytest says: {last}")
    return elapsed


def profile(repo: Path, n: int, out: Path, top: int) -> None:
    argv = [PYTHON, "-m", "cProfile", "-o", str(out), "-m", "pytest", "configs"]
    elapsed, _ = run([*argv, "--collect-only", "-q"], repo)
    stats = pstats.Stats(str(out))
    entries = stats.stats  # type: ignore[attr-defined]
    total = max(ct for _, _, _, ct, _ in entries.values())
    mine = {k: v for k, v in entries.items() if "xstash_plugin" in k[0]}
    own = sum(v[2] for v in mine.values())
    print(
        f"\ncProfile of xstash collecting {n} configs: {elapsed:.2f} s under the profiler, "
        f"{total:.2f} s profiled; own time in xstash_plugin: {own:.2f} s "
        f"({100 * own / total:.0f}%); profile saved to {out}"
    )

    def show(title: str, index: int) -> None:
        print(f"\ntop {top} xstash_plugin functions by {title}:")
        print(f"{'ncalls':>9} {'tottime':>8} {'cumtime':>8}  function")
        ranked = sorted(mine.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
        for (filename, line, func), (_, ncalls, tottime, cumtime, _) in ranked:
            where = filename[filename.index("xstash_plugin") :]
            print(f"{ncalls:>9} {tottime:>8.3f} {cumtime:>8.3f}  {where}:{line}({func})")

    show("cumulative time", 3)
    show("own time (tottime)", 2)
    print(f"\ntop {top} of the whole process by own time (for context):")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=10_000, help="configs (default 10000)")
    p.add_argument("--profile", action="store_true", help="also profile xstash's collection")
    p.add_argument("--top", type=int, default=25, help="profile entries shown (default 25)")
    p.add_argument("--profile-out", default=None, metavar="PATH", help="keep the .prof here")
    args = p.parse_args()
    with workdir(args.keep, "collection") as tmp:
        repo, floor = build(tmp, args.n)
        print(f"B3: {args.n} configs in {tmp}; warm-up (page cache, .pyc)", flush=True)
        collect(repo, args.n)
        collect(floor, args.n, "-p", "no:xstash")
        cpu: dict[str, list[float]] = {"xstash": [], "floor": []}
        times = alternate(
            {
                "xstash": lambda i: collect(repo, args.n, cpu=cpu["xstash"]),
                "floor": lambda i: collect(floor, args.n, "-p", "no:xstash", cpu=cpu["floor"]),
            },
            args.repeat,
        )
        if args.profile:
            out = Path(args.profile_out) if args.profile_out else tmp / "collect.prof"
            profile(repo, args.n, out.absolute(), args.top)
    x, f = median(times["xstash"]), median(times["floor"])
    ratio = x / f
    print(f"\nxstash --collect-only: {spread(times['xstash'])} s")
    print(f"floor (CSafeLoader items, -p no:xstash): {spread(times['floor'])} s")
    # CPU time (user + sys) is steadier than wall time on a busy machine.
    xc, fc = median(cpu["xstash"]), median(cpu["floor"])
    print(f"cpu (user+sys): xstash {spread(cpu['xstash'])} s, floor {spread(cpu['floor'])} s")
    print(
        f"cpu per config: xstash {1000 * xc / args.n:.2f} ms, floor {1000 * fc / args.n:.2f} ms, "
        f"added {1000 * (xc - fc) / args.n:.2f} ms; cpu ratio {xc / fc:.2f}"
    )
    print(
        f"per config: xstash {1000 * x / args.n:.2f} ms, floor {1000 * f / args.n:.2f} ms, "
        f"added {1000 * (x - f) / args.n:.2f} ms"
    )
    line = (
        f"B3 collection ({args.n} configs, --collect-only): xstash {x:.2f} s, floor {f:.2f} s, "
        f"ratio {ratio:.2f} (goal <= {GOAL}) - median of {args.repeat}"
    )
    print(line)
    finish(
        [
            Row(
                id="B3",
                what=f"--collect-only of {args.n} configs vs pytest + CSafeLoader floor",
                goal=f"<= {GOAL}",
                measured=f"{ratio:.2f} ({x:.2f} s vs {f:.2f} s)",
                met=ratio <= GOAL,
                command=command_line("collection.py", args, "--n", str(args.n)),
            )
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
