"""Part of the compose server (joined into its source, see compose_client.SERVER_PARTS): the
points of one sweep are composed from one defaults list.

Hydra composes a config in two steps: the defaults list (which config files, from the primary
config and the config-group overrides) and the merge of those files; then it applies the value
overrides (``params.lr=0.01``) to the result. The first two steps are four fifths of a compose,
and they do not depend on the values: two points of a sweep that differ only in values get the
same defaults list and the same merged config. So each distinct (config folder, primary config,
group overrides) is taken to its merged config once; the next point with the same ones gets a
copy of it, and Hydra applies that point's values to the copy as it always does.

Which override is a value is Hydra's own rule (``Overrides.__init__`` in
``hydra/_internal/defaults_list.py``): one whose key is no config group in the repository, or
whose value is a mapping. Hydra's own overrides (``hydra.searchpath`` decides where the files
are found) are part of what is remembered by, values or not. Errors are never remembered: a
config that fails is composed afresh each time. Set ``XSTASH_COMPOSE_MEMO=off`` in the tool's
environment to compose every point from scratch.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from typing import Any


class ComposeMemo:
    """Remembers defaults lists and merged configs while :meth:`active` (around the compose of
    one request); outside it (the unknown-key check's own compose) everything goes through."""

    def __init__(self) -> None:
        self.context: str | None = None  # the config folder of the request being composed
        self.lists: dict[tuple[Any, ...], Any] = {}  # key -> Hydra's DefaultsList
        self.merged: dict[int, tuple[Any, Any]] = {}  # id(defaults) -> (defaults, config)
        self.hits = 0

    @contextlib.contextmanager
    def active(self, config_dir: str) -> Iterator[None]:
        self.context = config_dir
        try:
            yield
        finally:
            self.context = None

    def install(self) -> bool:
        """Wrap Hydra's two steps; False (nothing changed) when this Hydra lacks them or the
        memo is turned off."""
        if os.environ.get("XSTASH_COMPOSE_MEMO", "on").strip().lower() in ("off", "0", "false"):
            return False
        try:
            from hydra._internal import config_loader_impl
            from hydra._internal.config_loader_impl import ConfigLoaderImpl
            from hydra._internal.defaults_list import DefaultsList
        except ImportError:
            return False
        create = getattr(config_loader_impl, "create_defaults_list", None)
        merge = getattr(ConfigLoaderImpl, "_compose_config_from_defaults_list", None)
        if create is None or merge is None:
            return False
        config_loader_impl.create_defaults_list = self._wrap_create(create, DefaultsList)
        ConfigLoaderImpl._compose_config_from_defaults_list = self._wrap_merge(merge)
        return True

    def _wrap_create(self, create: Callable[..., Any], result: Any) -> Callable[..., Any]:
        def create_defaults_list(
            repo: Any,
            config_name: Any,
            overrides_list: Any,
            prepend_hydra: Any,
            skip_missing: Any,
        ) -> Any:
            if self.context is None:
                return create(repo, config_name, overrides_list, prepend_hydra, skip_missing)
            split = [(o, _is_value(repo, o)) for o in overrides_list]
            values = [o for o, value in split if value]
            # Hydra's own overrides stay in the key even as values: hydra.searchpath changes
            # where the defaults list's files are found.
            fixed = tuple(o.input_line for o, value in split if o.is_hydra_override() or not value)
            key = (self.context, config_name, prepend_hydra, skip_missing, fixed)
            known = self.lists.get(key)
            if known is None:
                known = create(repo, config_name, overrides_list, prepend_hydra, skip_missing)
                self.lists[key] = known
                return known
            self.hits += 1
            return result(
                defaults=known.defaults,
                config_overrides=values,
                defaults_tree=known.defaults_tree,
                overrides=known.overrides,
            )

        return create_defaults_list

    def _wrap_merge(self, merge: Callable[..., Any]) -> Callable[..., Any]:
        def compose_config_from_defaults_list(loader: Any, defaults: Any, repo: Any) -> Any:
            if self.context is None:
                return merge(loader, defaults=defaults, repo=repo)
            known = self.merged.get(id(defaults))
            if known is not None and known[0] is defaults:
                return copy.deepcopy(known[1])
            cfg = merge(loader, defaults=defaults, repo=repo)
            self.merged[id(defaults)] = (defaults, copy.deepcopy(cfg))
            return cfg

        return compose_config_from_defaults_list


def _is_value(repo: Any, override: Any) -> bool:
    """Whether Hydra counts ``override`` among the config (value) overrides, not the defaults
    list's: the rule of ``Overrides.__init__``."""
    if override.is_sweep_override():
        return False  # Hydra refuses it later; keep it in the key
    return isinstance(override.value(), dict) or not repo.group_exists(override.key_or_group)
