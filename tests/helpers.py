"""Test helpers: a small repository (configs + tools) built in a pytester folder."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

HYDRA_PIN = "hydra-core==1.3.8"

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
