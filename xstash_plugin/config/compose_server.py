"""The compose server: runs inside a tool's own Python (``python -c <its source>``).

It imports the tool's entry once (so Hydra, the tool's modules, its ConfigStore schemas and the
resolvers it registers at import are loaded once), finds the ``@hydra.main`` function, and then
composes experiment after experiment with Hydra's own config loader, the way the tool's command
line would (``--config-dir <dir> --config-name <name> <overrides> --cfg job --resolve``), without
running anything. For each it answers a verdict: Hydra's error if composing or resolving fails,
and the keys the experiment sets that the config it extends does not have (a typo passes Hydra
when it comes from a config file, not from its command line).

Standard library and the tool's own Hydra only, no import of xstash: this runs in the tool's
environment, as one source joined from its parts (:mod:`.compose_server_checks`, then this file:
see :data:`xstash_plugin.config.compose_client.SERVER_PARTS`). Protocol: requests are JSON lines
on stdin; answers are JSON lines on the file descriptor given as the first argument (the tool may
print to stdout at import). The first answer is ``{"ready": true, ...}`` or
``{"ready": false, "error": ...}``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import runpy
import sys
import traceback
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # never at run time: that part is joined before this one into one source
    from .compose_server_checks import (
        _classify,
        _declared,
        _dedupe,
        _leaves,
        _message,
        _missing_prefix,
        _resolve_each,
        _split_key,
        _suggest,
    )
    from .compose_server_memo import ComposeMemo

RUN_NAME = "__xstash_compose__"  # the module name a file-style entry is imported under


def _send(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


def _find_main(namespace: dict[str, Any]) -> Any:
    """The function ``@hydra.main`` made, among the entry module's globals (also under other
    decorators that keep ``__wrapped__``)."""
    for value in list(namespace.values()):
        for _ in range(5):
            try:
                code = getattr(value, "__code__", None)
                closure = getattr(value, "__closure__", None)
            except Exception:  # a lazy module or proxy that refuses attribute look-ups
                break
            if code is not None and code.co_name == "decorated_main" and closure:
                cells = dict(zip(code.co_freevars, closure, strict=False))
                if {"config_path", "config_name", "task_function"} <= set(cells):
                    return value
            try:
                value = getattr(value, "__wrapped__", None)
            except Exception:
                break
            if value is None:
                break
    return None


class Server:
    def __init__(self, kind: str, entry: str, path0: str) -> None:
        self.kind = kind
        self.entry = entry
        sys.path[0] = path0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "module":
                module = __import__(entry, fromlist=["_"])
                namespace = vars(module)
                own = entry
            else:
                namespace = runpy.run_path(entry, run_name=RUN_NAME)
                own = RUN_NAME
        main = _find_main(namespace)
        if main is None:
            raise LookupError(f"no function decorated with @hydra.main in {entry}")
        cells = {
            name: cell.cell_contents
            for name, cell in zip(main.__code__.co_freevars, main.__closure__, strict=False)
        }
        self.config_path: str | None = cells["config_path"]
        self.config_name: str | None = cells["config_name"]
        task = cells["task_function"]
        while hasattr(task, "__wrapped__"):
            task = task.__wrapped__

        from hydra._internal.utils import (
            create_automatic_config_search_path,
            detect_calling_file_or_module_from_task_function,
        )

        if getattr(task, "__module__", None) == own:
            # At run time the entry is __main__, and Hydra then takes the function's file.
            self.calling: tuple[str | None, str | None] = (inspect.getfile(task), None)
        else:
            self.calling = detect_calling_file_or_module_from_task_function(task)
        self.make_search_path = create_automatic_config_search_path
        self.baselines: dict[Any, Any] = {}
        self.captured: tuple[Any, Any] | None = None
        self.memo = ComposeMemo()
        self.memo.install()  # before the capture: a defaults list it recalls is captured too
        self._capture_defaults_lists()
        _remember_parsed_yaml()
        self.tool_configs, self.tool_groups = self._listing()

    def _capture_defaults_lists(self) -> None:
        """Keep the defaults list (and repository) of the last compose: the baseline of the
        unknown-key check is made from it instead of computing it a second time."""
        from hydra._internal import config_loader_impl

        create = config_loader_impl.create_defaults_list

        def capturing(*args: Any, **kwargs: Any) -> Any:
            result = create(*args, **kwargs)
            self.captured = (result, kwargs.get("repo", args[0] if args else None))
            return result

        config_loader_impl.create_defaults_list = capturing

    def _hydra(self, config_dir: str | None) -> Any:
        from hydra._internal.hydra import Hydra
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        search_path = self.make_search_path(*self.calling, self.config_path)
        if config_dir is not None:
            try:
                from hydra.core.config_search_path import SearchPathQuery

                search_path.prepend(
                    provider="command-line",
                    path=f"file://{os.path.abspath(config_dir)}",
                    anchor=SearchPathQuery(provider="schema"),
                )
            except (ImportError, TypeError, AttributeError):
                search_path.append("command-line", f"file://{os.path.abspath(config_dir)}")
        return Hydra.create_main_hydra2(task_name="xstash", config_search_path=search_path)

    def _listing(self) -> tuple[list[str], list[str]]:
        """The tool's own primary configs and config groups (for did-you-mean)."""
        try:
            from hydra.core.object_type import ObjectType

            loader = self._hydra(None).config_loader
            configs = loader.get_group_options("", results_filter=ObjectType.CONFIG)
            groups = loader.get_group_options("", results_filter=ObjectType.GROUP)
        except Exception:
            return [], []
        return sorted(configs), sorted(g for g in groups if g != "hydra")

    def ready(self) -> dict[str, Any]:
        import hydra

        return {
            "ready": True,
            "config_name": self.config_name,
            "config_path": self.config_path,
            "hydra": getattr(hydra, "__version__", "?"),
            "configs": self.tool_configs,
            "groups": self.tool_groups,
        }

    # -- one request -------------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from hydra.core.global_hydra import GlobalHydra

        errors: list[dict[str, Any]] = []
        notes: list[str] = []
        hydra_ok = False
        hits = self.memo.hits
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # version_base and deprecation warnings are noise
            self.captured = None
            try:
                hydra = self._hydra(request["config_dir"])
                with self.memo.active(request["config_dir"]):
                    self._compose(hydra, request, errors)
                hydra_ok = not errors  # Hydra's own verdict, as --cfg job --resolve gives it
                missing = any(e["kind"] == "missing_config" for e in errors)
                if request.get("check_keys") and not missing:
                    try:
                        self._check_keys(hydra, request, errors)
                    except Exception as exc:  # an internal of another Hydra version
                        notes.append(f"unknown-key check skipped: {_message(exc)}")
            except Exception as exc:
                errors.append({"kind": "other", "message": _message(exc)})
            finally:
                GlobalHydra.instance().clear()
        recalled = self.memo.hits > hits  # composed from a remembered defaults list
        answer = {"ok": not errors, "hydra_ok": hydra_ok, "errors": _dedupe(errors)}
        return {**answer, "notes": notes, "recalled": recalled}

    def _compose(self, hydra: Any, request: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        """What ``--cfg job --resolve`` does, every interpolation resolved on its own so each
        bad one is reported."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.errors import MissingConfigException
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        try:
            cfg = hydra.compose_config(
                config_name=request["config_name"],
                overrides=list(request["overrides"]),
                run_mode=RunMode.RUN,
                with_log_configuration=False,
            )
        except MissingConfigException as exc:
            errors.append(
                {
                    "kind": "missing_config",
                    "missing": exc.missing_cfg_file,
                    "options": list(exc.options or []),
                    "message": _message(exc),
                    "configs": self.tool_configs,
                    "groups": self.tool_groups,
                }
            )
            return
        except Exception as exc:
            errors.append(_classify(exc))
            return
        HydraConfig.instance().set_config(cfg)
        OmegaConf.set_readonly(cfg.hydra, None)
        job = hydra.get_sanitized_cfg(cfg, "job")
        _resolve_each(job, [], errors)

    def _baseline(self, hydra: Any) -> Any:
        """The config the experiment extends: every config its defaults list selects (after
        group overrides), without the experiment's own values; composed once per distinct
        selection, from the defaults list the compose itself made."""
        from omegaconf import OmegaConf

        if self.captured is None:
            raise LookupError("Hydra made no defaults list")
        defaults, repo = self.captured
        selected = [d for d in defaults.defaults if not (d.primary and d.is_self)]
        ident = tuple((d.config_path, d.package, d.is_self) for d in selected)
        if ident not in self.baselines:
            from hydra._internal.config_repository import CachingConfigRepository

            # A fresh cache: merging the experiment into the composed config can change the
            # nodes the last compose loaded (Hydra merges without copying them).
            fresh = CachingConfigRepository(repo.delegate)
            cfg = hydra.config_loader._compose_config_from_defaults_list(
                defaults=selected, repo=fresh
            )
            with contextlib.suppress(Exception):
                del cfg["hydra"]
            self.baselines[ident] = OmegaConf.to_container(cfg, resolve=False)
        return self.baselines[ident]

    def _check_keys(
        self,
        hydra: Any,
        request: dict[str, Any],
        errors: list[dict[str, Any]],
    ) -> None:
        base = self._baseline(hydra)
        assert self.captured is not None
        key_overrides = self.captured[0].config_overrides
        repo = self.captured[1]
        declared = [_split_key(k) for k in request.get("new_keys", [])]
        reported = {tuple(e.get("path") or ()) for e in errors}
        shape: dict[str, Any] = request["shape"]
        for path, value in _leaves(shape, []):
            if _declared(path, declared):
                continue
            problem = _missing_prefix(base, path)
            if problem is None:
                if not isinstance(value, dict) and value != "list" and path:
                    self._group_value(base, path, repo, errors)
                continue
            if tuple(problem) in reported:
                continue
            reported.add(tuple(problem))
            errors.append(
                {
                    "kind": "unknown_key",
                    "path": problem,
                    "suggest": _suggest(base, problem),
                }
            )
        for error in errors:  # Hydra's own key errors get the same suggestion as ours
            if error["kind"] in ("key", "override") and not error.get("suggest"):
                missing = _missing_prefix(base, list(error.get("path") or []))
                if missing:
                    error["suggest"] = _suggest(base, missing)
        for override in key_overrides:
            if override.is_hydra_override() or override.is_add() or override.is_force_add():
                continue
            if override.is_delete():
                continue
            path = _split_key(override.key_or_group)
            if _declared(path, declared) or _missing_prefix(shape, path) is None:
                continue
            if tuple(path) in reported:
                continue
            if _missing_prefix(base, path) is not None:
                errors.append(
                    {
                        "kind": "override",
                        "key": override.key_or_group,
                        "path": path,
                        "suggest": _suggest(base, _missing_prefix(base, path) or path),
                    }
                )

    def _group_value(
        self, base: Any, path: list[str], repo: Any, errors: list[dict[str, Any]]
    ) -> None:
        """A plain value set where the config has a config group's node: ``model: big`` in a
        config file replaces the group's whole node with a string, it does not choose ``big``."""
        node: Any = base
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        group = "/".join(path)
        if not isinstance(node, dict):
            return
        try:
            if not repo.group_exists(group):
                return
            from hydra.core.object_type import ObjectType

            options = sorted(repo.get_group_options(group, ObjectType.CONFIG))
        except Exception:
            return
        errors.append({"kind": "group_value", "path": path, "group": group, "options": options})

    def serve(self, out: Any) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                answer = self.handle(request)
            except BaseException as exc:
                answer = {"ok": False, "errors": [{"kind": "other", "message": _message(exc)}]}
            answer["id"] = request.get("id")
            _send(out, answer)


def _remember_parsed_yaml() -> None:
    """Every compose reads Hydra's own configs (and the tool's) again, and OmegaConf parses
    YAML with PyYAML's pure-Python loader: a sixth of a compose. Keep what each text parsed to
    (plain data, keyed by the text itself) and build a fresh config from a copy of it each
    time, which is what ``OmegaConf.load`` does after parsing."""
    import copy
    import io
    import pathlib

    import yaml
    from omegaconf import OmegaConf
    from omegaconf._utils import get_yaml_loader  # type: ignore[attr-defined]

    parsed: dict[str, Any] = {}

    def load(file_: Any) -> Any:
        if isinstance(file_, (str, pathlib.Path)):
            with open(os.path.abspath(file_), encoding="utf-8") as handle:
                text = handle.read()
        elif getattr(file_, "read", None):
            text = file_.read()
        else:
            raise TypeError("Unexpected file type")
        if not isinstance(text, str):
            text = text.decode("utf-8")
        if text not in parsed:
            parsed[text] = yaml.load(io.StringIO(text), Loader=get_yaml_loader())
        obj = copy.deepcopy(parsed[text])
        if obj is None:
            return OmegaConf.create()
        if isinstance(obj, str):
            return OmegaConf.create({obj: None})
        return OmegaConf.create(obj)

    OmegaConf.load = staticmethod(load)  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> None:
    out = os.fdopen(int(argv[1]), "w", encoding="utf-8")
    try:
        server = Server(argv[2], argv[3], argv[4])
    except BaseException as exc:
        tail = traceback.format_exception(type(exc), exc, exc.__traceback__)
        _send(out, {"ready": False, "error": _message(exc), "traceback": "".join(tail)[-4000:]})
        return
    _send(out, server.ready())
    server.serve(out)


if __name__ == "__main__":
    main(sys.argv)
