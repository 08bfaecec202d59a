"""Deep validation at collection: each tool composes each experiment (and sweep point).

Collection asks the tool itself whether an experiment composes, through **one long-lived
compose server per tool** (:mod:`.compose_server`, driven by :mod:`.compose_client`) in the
tool's own environment: it imports the tool's entry once (its ConfigStore schemas and resolvers
register at import) and composes each config with Hydra's config loader, as ``--cfg job
--resolve`` would, without running the tool. On top of Hydra's own verdict it finds the keys an
experiment sets that the config it extends does not have (Hydra's command line refuses those; a
config file silently adds them).

Each verdict is cached by content (:mod:`.compose_cache`), so an unchanged config never reaches
its tool again. Requests are pipelined (a sweep's points are all sent before the first answer is
read) and answered in a reader thread per server, which also writes the cache. Several pytest
processes (xdist workers) share the work through claim files: a verdict another live process is
composing is waited for, not composed twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from xstash_plugin.config.compose_cache import VerdictCache
from xstash_plugin.config.compose_client import (
    COMPOSE_TIMEOUT,
    Pending,
    Run,
    ServerGone,
    ToolServer,
)
from xstash_plugin.config.compose_errors import judge
from xstash_plugin.config.experiment import Experiment
from xstash_plugin.config.needs import placeholders
from xstash_plugin.config.registry import Tool
from xstash_plugin.errors import ConfigError, EnvError
from xstash_plugin.run.command import build_argv
from xstash_plugin.run.envs import EnvManager
from xstash_plugin.run.rundir import CONFIG_NAME, content_key, write_tool_config

COMPOSE_HELP = (
    "on (default): each tool composes each collected experiment and sweep point at collection "
    "(one compose process per tool, verdicts cached by content), so unknown keys, missing "
    "config-group options and interpolations that cannot resolve are collection errors; "
    "off: only what xstash can check without the tool"
)
_CLAIM_POLL = 0.02


def parse_compose_setting(value: str, source: str) -> bool:
    """``on``/``off`` (also true/false, 1/0, yes/no) -> bool; ValueError naming ``source``."""
    word = value.strip().lower()
    if word in ("on", "true", "1", "yes"):
        return True
    if word in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{source} = {value!r}: use on or off")


def key_shape(payload: dict[str, Any], pass_experiment: bool) -> dict[str, Any]:
    """The keys an experiment sets in the tool's config (its values do not matter to the
    unknown-key check): mappings as mappings, lists as ``"list"``, scalars as ``0``."""

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): shape(v) for k, v in value.items()}
        return "list" if isinstance(value, list) else 0

    skip = {"defaults", "hydra"} | ({"experiment"} if pass_experiment else set())
    return {str(k): shape(v) for k, v in payload.items() if k not in skip}


class ComposeService:
    """Composes (or recalls) every run of the experiments being collected; one per pytest
    process, created in ``pytest_configure`` and closed in ``pytest_unconfigure``."""

    def __init__(self, state_dir: Path, envs: EnvManager) -> None:
        self.dir = state_dir / "compose"
        self.cache = VerdictCache(self.dir)
        self.envs = envs
        self.servers: dict[str, ToolServer | str] = {}  # tool folder -> server or why none
        self.composed = 0  # runs this process sent to a compose server
        self.cached = 0  # verdicts recalled from the cache (or from another process)
        self.skipped: dict[str, str] = {}  # tool -> why it is not composed
        self.seconds = 0.0

    def _recall(self, item: Pending) -> bool:
        """Whether the verdict of ``item`` is in the cache (then it is its answer)."""
        item.answer = self.cache.recall(item.key)
        if item.answer is None:
            return False
        self.cached += 1
        return True

    # -- servers -----------------------------------------------------------------------------

    def _server(self, tool: Tool) -> ToolServer | str:
        """The tool's compose server, started on first use; or why the tool cannot compose
        (a string: not an error of any config)."""
        found = self.servers.get(str(tool.path))
        if found is not None:
            return found
        python = self.envs.python_for(tool)  # EnvError: the caller reports it
        log = self.dir / "servers" / f"{tool.name}-{os.getpid()}.log"
        try:
            server: ToolServer | str = ToolServer(tool, python, log)
        except OSError as exc:
            server = f"its compose process could not be started: {exc}"
        self.servers[str(tool.path)] = server
        return server

    def skip_reason(self, tool: Tool) -> str | None:
        """Why ``tool`` is not composed at all (it is no Hydra app xstash can import)."""
        main = tool.hydra_main
        if main is None or not main.found:
            entry = " ".join(tool.entrypoint)
            return main.problem if main and main.problem else f"no @hydra.main in {entry}"
        if not main.guarded:
            return (
                f"{main.entry_file} has no 'if __name__ == \"__main__\":' block, so importing "
                "it to compose would run the tool"
            )
        return None

    # -- checking ----------------------------------------------------------------------------

    def check(self, experiment: Experiment, runs: list[Run]) -> list[ConfigError]:
        """Compose every run of ``experiment``; the collection errors it has (none: fine)."""
        tool = experiment.tool
        try:
            pending = self.compose(experiment, runs)
        except EnvError as exc:
            return [
                ConfigError(
                    experiment.config_path,
                    experiment.line,
                    f"tool '{tool.name}' cannot compose this experiment: {exc}",
                    "fix what the message names (the tool's dependencies, or xstash's output "
                    "root), or collect without composing: --xstash-compose=off",
                )
            ]
        return judge(experiment, pending)

    def compose(self, experiment: Experiment, runs: list[Run]) -> list[Pending]:
        """The verdict of every run (recalled, or composed now); EnvError when the tool's
        environment cannot be prepared. Nothing for a tool that is not composed at all."""
        reason = self.skip_reason(experiment.tool)
        if reason is not None:
            self.skipped.setdefault(experiment.tool.name, reason)
            return []
        started = time.perf_counter()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvError(
                f"xstash cannot write its compose verdicts in {self.dir}: {exc}\n"
                f"fix: make {self.dir} a writable folder, choose another output root with "
                "--xstash-output-root, or collect without composing (--xstash-compose=off)"
            ) from None
        pending = self._submit(experiment, runs)
        deadline = time.monotonic() + COMPOSE_TIMEOUT
        for item in pending:
            if item.answer is None:
                self._wait(experiment, item, deadline)
        self.seconds += time.perf_counter() - started
        return pending

    def _submit(self, experiment: Experiment, runs: list[Run]) -> list[Pending]:
        pending = [Pending(run, self.cache.key(experiment, run.overrides)) for run in runs]
        misses = [item for item in pending if not self._recall(item)]
        if not misses:
            return pending
        server = self._server(experiment.tool)  # EnvError before anything is claimed
        config_dir = self._write_config(experiment)
        for item in misses:
            item.claim_owner = self.cache.claim(item.key)
            if item.claim_owner is not None:
                continue  # another process composes it: its verdict is waited for
            if isinstance(server, str):
                item.problem = server
                self.cache.release(item.key)
            else:
                self._send(experiment, item, config_dir, server)
        return pending

    def _write_config(self, experiment: Experiment) -> Path:
        payload = experiment.payload
        if experiment.needs:  # upstream values exist only at run time: stand-ins to compose
            payload = placeholders(payload, [need.name for need in experiment.needs])
        folder = self.dir / "configs" / content_key({"config": payload})
        folder.mkdir(parents=True, exist_ok=True)
        return write_tool_config(folder, payload)

    def _send(
        self, experiment: Experiment, item: Pending, config_dir: Path, server: ToolServer
    ) -> None:
        argv = build_argv("python", experiment, config_dir, config_dir.parent / "run", [])
        overrides = list(argv[argv.index("--config-name") + 2 :]) + item.run.overrides
        request = {
            "config_dir": str(config_dir),
            "config_name": CONFIG_NAME,
            "overrides": overrides,
            "check_keys": experiment.tool.primary is not None,
            "shape": key_shape(experiment.payload, experiment.tool.pass_experiment),
            "new_keys": list(experiment.new_keys),
        }
        key = item.key
        item.request = request
        try:
            item.ident = server.send(request, lambda answer: self.cache.store(key, answer))
            item.server = server
            self.composed += 1
        except ServerGone as exc:
            item.problem = str(exc)
            self.cache.release(item.key)

    def _wait(self, experiment: Experiment, item: Pending, deadline: float) -> None:
        if item.server is not None:
            try:
                item.answer = item.server.wait(item.ident, deadline)
            except ServerGone as exc:
                item.problem = str(exc)
                self.cache.release(item.key)  # nobody else waits in vain
            return
        if item.claim_owner is None:
            return  # item.problem says why it was not sent
        while time.monotonic() < deadline:  # another process composes it
            if self._recall(item):
                return
            if self.cache.owner(item.key) is None:
                break
            time.sleep(_CLAIM_POLL)
        if self._recall(item):
            return
        # The other process stopped (or gave up) without a verdict: compose it here.
        owner, item.claim_owner = item.claim_owner, self.cache.claim(item.key)
        server = self._server(experiment.tool)
        if item.claim_owner is None and isinstance(server, ToolServer):
            self._send(experiment, item, self._write_config(experiment), server)
            if item.server is not None:
                self._wait(experiment, item, deadline)
                return
        item.problem = item.problem or (
            server if isinstance(server, str) else f"process {owner} did not finish composing it"
        )

    def summary(self) -> str | None:
        """The line ``pytest_report_collectionfinish`` shows (None: nothing was checked)."""
        total = self.composed + self.cached
        parts = []
        if total:
            started = sum(isinstance(s, ToolServer) for s in self.servers.values())
            how = []
            if self.composed:
                how.append(
                    f"{self.composed} by {started} compose process(es) in {self.seconds:.1f}s"
                )
            if self.cached:
                how.append(f"{self.cached} unchanged since their last check (cached)")
            parts.append(f"xstash: composed {total} run(s) with their tools: {', '.join(how)}")
        for tool, reason in sorted(self.skipped.items()):
            parts.append(f"xstash: tool '{tool}' is not composed at collection: {reason}")
        return "\n".join(parts) or None

    def close(self) -> None:
        for server in self.servers.values():
            if isinstance(server, ToolServer):
                server.close()
        self.cache.release_all()
