"""Test helpers: a small repository (configs + tools) built in a pytester folder."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest

HYDRA_PIN = "hydra-core==1.3.8"
COLORLOG_PIN = "hydra-colorlog==1.2.0"
LOGGING_GROUPS = ("job_logging", "hydra_logging")  # real_app: both set to colorlog

HYDRA_MAIN = """\
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    hc = HydraConfig.get()
    print("job:", hc.job.name)
    print("config:", json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True))
    with open(os.path.join(hc.runtime.output_dir, "seen.json"), "w") as f:
        json.dump({"job": hc.job.name, "cfg": OmegaConf.to_container(cfg, resolve=True),
                   "cwd": os.getcwd(), "python": sys.executable}, f)

if __name__ == "__main__":
    main()
"""

# A real Hydra tool: writes cfg.metrics to metrics.json in Hydra's output dir, prints "tool
# done", then exits with cfg.code, or kills itself with cfg.signal (a signal's name).
METRICS_EXIT_TOOL = """\
import json, os, signal, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    conf = OmegaConf.to_container(cfg, resolve=True)
    if "metrics" in conf:
        out = HydraConfig.get().runtime.output_dir
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(conf["metrics"], f)
    print("tool done", flush=True)
    if "signal" in conf:
        os.kill(os.getpid(), getattr(signal, conf["signal"]))
    sys.exit(int(conf.get("code", 0)))

if __name__ == "__main__":
    main()
"""

# The start of a plain-Python tool (no Hydra, for tests of the orchestrator's own reactions):
# ``run_dir`` from the hydra.run.dir override, ``config`` the text of the config xstash wrote
# there (read values with a regex, e.g. ``sleep: ([0-9.]+)``). Tools add their own imports.
PLAIN_TOOL_HEAD = """\
import os, re, sys
args = dict(a.split("=", 1) for a in sys.argv if "=" in a)
run_dir = args["hydra.run.dir"].strip("'")
config = open(os.path.join(run_dir, "xstash_config", "xstash_experiment.yaml")).read()
"""

# Plain Python: sleeps its config's 'sleep' seconds, then prints "slept".
CONFIG_SLEEPER = (
    PLAIN_TOOL_HEAD
    + """\
import time
time.sleep(float(re.search(r"sleep: ([0-9.]+)", config).group(1)))
print("slept")
"""
)


# A tool shaped like a real public Hydra app (see tools/toy-classifier): module-style entry,
# primary config with config groups whose options are instantiated from `_target_`, colorlog.
REAL_APP_MAIN = """\
import json
import logging
import os
import shutil

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

import app.heavy  # noqa: F401  (the app's heavy dependencies: torch, sklearn, ...)
{schema_import}
log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="{primary}")
def main(cfg):
    model = instantiate(cfg.model)
    dataset = instantiate(cfg.dataset)
    accuracy = round(model.score(dataset, cfg.trainer.epochs, cfg.seed), 4)
    for epoch in range(1, cfg.trainer.epochs + 1):
        if epoch % cfg.trainer.log_every == 0:
            log.info("epoch %d/%d", epoch, cfg.trainer.epochs)
    print(f"model={{model.name}} dataset={{dataset.name}} epochs={{cfg.trainer.epochs}} "
          f"accuracy={{accuracy}}")
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "metrics.json"), "w") as f:
        json.dump({{"accuracy": accuracy, "n_test": dataset.n_test(cfg.test_size)}}, f)


if __name__ == "__main__":
    main()
"""

# The real app's heavy import, as a module of its own: once imported it stays in sys.modules, so
# a run forked from a process that imported the tool (preload) does not pay it again, as with a
# real `import torch`; the entry module itself is executed again by every run. Each time it is
# really imported, it appends a line to <project root>/starts-<name>.log (outside the tool's
# folder: a file written there would count as a change of the tool).
REAL_APP_HEAVY = """\
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
with open(os.path.join(ROOT, "starts-{name}.log"), "a") as f:
    f.write(f"{{os.getpid()}}\\n")
{sleep}"""

REAL_APP_MODELS = """\
class Linear:
    name = "linear"

    def __init__(self, lr=0.1, penalty="l2"):
        self.lr = lr
        self.penalty = penalty

    def score(self, dataset, epochs, seed):
        return min(0.99, 0.6 + 0.1 * epochs * min(self.lr, 1.0) - dataset.noise / 4 + seed * 1e-4)


class Tree:
    name = "tree"

    def __init__(self, depth=3, min_leaf=1):
        self.depth = depth
        self.min_leaf = min_leaf

    def score(self, dataset, epochs, seed):
        return min(0.99, 0.7 + 0.05 * self.depth - dataset.noise / 2 + seed * 1e-4)
"""

REAL_APP_DATA = """\
class Dataset:
    def __init__(self, name, n_samples=150, noise=0.1):
        self.name = name
        self.n_samples = n_samples
        self.noise = noise

    def n_test(self, test_size):
        return max(1, round(test_size * self.n_samples))
"""

REAL_APP_SCHEMA = """\
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class LinearSchema:
    _target_: str = "app.models.Linear"
    lr: float = 0.1
    penalty: str = "l2"


@dataclass
class TreeSchema:
    _target_: str = "app.models.Tree"
    depth: int = 3
    min_leaf: int = 1


@dataclass
class DatasetSchema:
    _target_: str = "app.data.Dataset"
    name: str = MISSING
    n_samples: int = 150
    noise: float = 0.1


@dataclass
class TrainerSchema:
    epochs: int = 3
    log_every: int = 1


@dataclass
class AppSchema:
    model: Any = MISSING
    dataset: Any = MISSING
    test_size: float = 0.2
    seed: int = 0
    trainer: TrainerSchema = field(default_factory=TrainerSchema)


def register():
    store = ConfigStore.instance()
    store.store(name="app_schema", node=AppSchema)
    store.store(group="model", name="linear_schema", node=LinearSchema)
    store.store(group="model", name="tree_schema", node=TreeSchema)
    store.store(group="dataset", name="dataset_schema", node=DatasetSchema)
"""


class Project:
    """A repository in a pytester folder: ``configs/meta.yaml``, ``tools/``, experiment files."""

    def __init__(self, pytester: pytest.Pytester, preload: bool = False) -> None:
        self.pytester = pytester
        self.preload = preload  # every tool gets 'preload: true' (runs fork from a server)
        self.root = pytester.path
        self.tools: dict[str, str] = {}
        (self.root / "configs").mkdir(exist_ok=True)

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def tool(
        self,
        name: str,
        main: str = HYDRA_MAIN,
        *,
        entrypoint: str = "src/main.py",
        env: str | None = None,
        deps: str | None = "pyproject",
        extra: str = "",
    ) -> Path:
        """Add a tool folder and register it; ``deps`` is 'pyproject', 'requirements' or None."""
        folder = self.root / "tools" / name
        if entrypoint.startswith("-m "):
            module = entrypoint.split()[1]
            main_path = folder / (module.replace(".", "/") + ".py")
            for parent in main_path.relative_to(folder).parents:
                if str(parent) != ".":
                    (folder / parent).mkdir(parents=True, exist_ok=True)
                    (folder / parent / "__init__.py").touch()
        else:
            main_path = folder / entrypoint
        main_path.parent.mkdir(parents=True, exist_ok=True)
        main_path.write_text(textwrap.dedent(main), encoding="utf-8")
        if deps == "pyproject":
            (folder / "pyproject.toml").write_text(
                f'[project]\nname = "{name}"\nversion = "0.1.0"\n'
                f'requires-python = ">=3.10"\ndependencies = ["{HYDRA_PIN}"]\n'
                "[tool.uv]\npackage = false\n"
            )
        elif deps == "requirements":
            (folder / "requirements.txt").write_text(HYDRA_PIN + "\n")
        lines = [f"  {name}:", f"    path: tools/{name}", f'    entrypoint: "{entrypoint}"']
        if env is not None:
            lines.append(f'    env: "{env}"')
        if self.preload:
            lines.append("    preload: true")
        if extra:
            lines.extend("    " + line for line in textwrap.dedent(extra).strip().splitlines())
        self.tools[name] = "\n".join(lines)
        self._write_meta()
        return folder

    def real_app(
        self,
        name: str = "app",
        *,
        import_seconds: float = 0.0,
        schema: bool = False,
        env: str | None = None,
        primary: str = "main",
    ) -> Path:
        """Add a tool shaped like a real public Hydra app (``tools/toy-classifier``) and register
        it: ``python -m app.main``, primary config ``app/conf/<primary>.yaml`` with groups
        ``model/`` (``linear``: lr, penalty; ``tree``: depth, min_leaf) and ``dataset/``
        (``iris``, ``digits``: n_samples, noise) instantiated from ``_target_``, top-level
        ``test_size``, ``seed``, ``trainer: {epochs, log_every}``, colorlog logging. It prints
        one line and writes ``metrics.json`` (``accuracy``, ``n_test``) to its output dir.

        Its entry imports ``app/heavy.py``, which at import (module level) appends a line to
        ``<root>/starts-<name>.log`` and sleeps ``import_seconds``, like a heavy dependency
        (``import torch``): :meth:`starts` counts the tool's real imports, one per fresh process
        (a plain run, a compose process, a preload server; not a run forked from the latter);
        ``schema=True`` registers a dataclass schema in ConfigStore at import (the primary's
        defaults start with it, as in tools/tiny-trainer), so unknown keys are rejected. Like
        real colorlog apps (hydra-colorlog 1.2.0's file handler is relative to the working
        directory), each run writes ``<job>.log`` into the tool's folder. ``env``: as for
        :meth:`tool` (e.g. the ``hydra_python`` fixture); without it, uv builds the tool's
        environment from its pyproject.toml (hydra-core and hydra-colorlog).
        """
        main = REAL_APP_MAIN.format(
            primary=primary,
            schema_import="from app.schema import register\n\nregister()\n" if schema else "",
        )
        sleep = f"time.sleep({float(import_seconds)!r})\n" if import_seconds > 0 else ""
        folder = self.tool(
            name,
            main,
            entrypoint="-m app.main",
            env=env,
            deps=None if env is not None else "pyproject",
        )
        if env is None:
            (folder / "pyproject.toml").write_text(
                f'[project]\nname = "{name}"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
                f'dependencies = ["{HYDRA_PIN}", "{COLORLOG_PIN}"]\n'
                "[tool.uv]\npackage = false\n"
            )
        package = folder / "app"
        (package / "heavy.py").write_text(REAL_APP_HEAVY.format(name=name, sleep=sleep))
        (package / "models.py").write_text(REAL_APP_MODELS)
        (package / "data.py").write_text(REAL_APP_DATA)
        if schema:
            (package / "schema.py").write_text(REAL_APP_SCHEMA)
        conf = package / "conf"
        conf.mkdir(exist_ok=True)
        defaults = ["app_schema"] if schema else []
        defaults += ["model: linear", "dataset: iris"]
        defaults += [f"override hydra/{group}: colorlog" for group in LOGGING_GROUPS]
        (conf / f"{primary}.yaml").write_text(
            "defaults:\n"
            + "".join(f"  - {entry}\n" for entry in [*defaults, "_self_"])
            + "\ntest_size: 0.2\nseed: 0\ntrainer:\n  epochs: 3\n  log_every: 1\n"
        )
        options = {  # group/option: (schema node, _target_, keys)
            "model/linear": ("linear_schema", "app.models.Linear", "lr: 0.1\npenalty: l2"),
            "model/tree": ("tree_schema", "app.models.Tree", "depth: 3\nmin_leaf: 1"),
            "dataset/iris": ("dataset_schema", "app.data.Dataset", "name: iris\nnoise: 0.1"),
            "dataset/digits": ("dataset_schema", "app.data.Dataset", "name: digits\nnoise: 0.3"),
        }
        samples = {"dataset/iris": 150, "dataset/digits": 1797}
        for option, (node, target, keys) in options.items():
            head = f"defaults:\n  - {node}\n  - _self_\n\n" if schema else ""
            if option in samples:
                keys = f"{keys}\nn_samples: {samples[option]}"
            path = conf / f"{option}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{head}_target_: {target}\n{keys}\n")
        return folder

    def starts(self, name: str = "app") -> int:
        """How often tool ``name`` made by :meth:`real_app` was started (really imported)."""
        log = self.root / f"starts-{name}.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def _write_meta(self) -> None:
        body = "\n".join(self.tools.values())
        (self.root / "configs" / "meta.yaml").write_text(f"tools:\n{body}\n")

    def config(self, relpath: str, text: str) -> Path:
        """Write ``configs/<relpath>``."""
        return self.write(f"configs/{relpath}", text)

    def run_dirs(self, config: str) -> list[Path]:
        """Run directories made for ``configs/<config>`` (without suffix), oldest first."""
        parent = self.root / "outputs" / "configs" / config
        return sorted(p for p in parent.iterdir() if p.is_dir()) if parent.exists() else []


def failure_report(result: pytest.RunResult, name: str) -> str:
    """The failure text of experiment ``name``: its report, without captured-output sections."""
    lines = result.outlines
    header = re.compile(rf"^_+ .*\b{re.escape(name)} _+$")
    start = next(i for i, line in enumerate(lines) if header.match(line))
    stop = re.compile(r"^(_{3,} .* _{3,}|={3,}.*={3,}|-{3,} Captured .* -{3,})$")
    end = start + 1
    while end < len(lines) and not stop.match(lines[end]):
        end += 1
    return "\n".join(lines[start + 1 : end])


def failures_section(result: pytest.RunResult) -> str:
    """pytest's FAILURES section: the failure reports and their captured output. (The short
    test summary after it repeats a failure's whole message when the CI variable is set.)"""
    text = result.stdout.str()
    start = re.search(r"=+ FAILURES =+", text)
    assert start is not None, text
    end = re.search(r"=+ (short test summary info|xstash results|warnings summary) =+", text)
    end_at = end.start() if end and end.start() > start.end() else len(text)
    return text[start.end() : end_at]


def error_messages(result: pytest.RunResult, config: str) -> list[tuple[int, str, str]]:
    """(line, what, fix) of every message in the 'ERROR collecting configs/<config>' section."""
    out = result.stdout.str()
    header = re.search(rf"^_+ ERROR collecting configs/{re.escape(config)} _+$", out, re.M)
    assert header, f"no collection error for configs/{config} in:\n{out}"
    rest = out[header.end() :]
    end = re.search(r"^(_{3,} |={3,} )", rest, re.M)
    section = rest[: end.start()] if end else rest
    message = re.compile(
        rf"^\S*/configs/{re.escape(config)}:(\d+): (.*)\n  fix: (.*(?:\n  .*)*)", re.M
    )
    return [(int(m[1]), m[2], m[3]) for m in message.finditer(section)]


def require_slurm() -> None:
    """At a SLURM test module's top: skip it without a cluster; under CI=true, fail instead
    (.ci/run brings a cluster up first)."""
    if shutil.which("sbatch") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(
            "no SLURM cluster (sbatch not found): CI must run .ci/slurm-ci-up.sh first",
            pytrace=False,
        )
    pytest.skip("no SLURM cluster here: run .ci/slurm-ci-up.sh", allow_module_level=True)
