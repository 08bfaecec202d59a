"""The compose server's checks (part of its source: see :mod:`.compose_server`): Hydra's and
OmegaConf's messages made short, compose errors classified by the key they are about, each
interpolation resolved on its own, and the keys an experiment sets that its config does not have,
with the closest existing key.

Standard library and the tool's own Hydra only, no import of xstash: this runs in the tool's
environment, joined with the other parts into one source.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

MAX_MESSAGE = 3000
_WRAPPED = re.compile(r"^In '[^']+': \w+ raised while composing config:\s*$")
_NOISE = re.compile(r"^\s*(full_key|object_type|reference_type|value_type)\s*[:=]")


def _message(exc: BaseException) -> str:
    """Hydra's or OmegaConf's words, without OmegaConf's ``full_key: ...`` detail lines and
    Hydra's listing of its search path; the cause is added when it says something more."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 3:
        text = str(getattr(seen, "msg", None) or seen).strip() or type(seen).__name__
        lines = []
        for line in text.splitlines():
            if line.strip() == "Config search path:":
                break
            if _WRAPPED.match(line):
                continue  # "In 'xstash_experiment': ConfigKeyError raised while composing..."
            if not _NOISE.match(line):
                lines.append(line.rstrip())
        while lines and not lines[-1].strip():
            lines.pop()
        cleaned = "\n".join(lines)
        if cleaned and all(cleaned not in p for p in parts):
            parts.append(cleaned)
        seen = seen.__cause__
    return "\n".join(parts)[:MAX_MESSAGE]


def _full_key(exc: BaseException) -> str | None:
    """The config key an OmegaConf error is about (Hydra wraps those: look in the causes and
    in the message it copies)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        key = getattr(seen, "full_key", None)
        if isinstance(key, str) and key:
            return key
        found = re.search(r"^\s*full_key: (\S+)\s*$", str(seen), re.MULTILINE)
        if found:
            return found.group(1)
        seen = seen.__cause__ or seen.__context__
    return None


def _split_key(key: str) -> list[str]:
    """``a.b[0].c`` -> ``['a', 'b', '0', 'c']``."""
    return [part for part in re.split(r"[.\[\]]+", key) if part]


def _classify(exc: BaseException) -> dict[str, Any]:
    """An error of Hydra's compose, with the key it is about when it names one."""
    text = str(exc)
    found = re.search(r"Could not override '([^']+)'", text)
    if found:
        key = found.group(1)
        return {"kind": "override", "key": key, "path": _split_key(key), "message": _message(exc)}
    key = _full_key(exc)
    if key is not None:
        return {"kind": "key", "path": _split_key(key), "message": _message(exc)}
    return {"kind": "other", "message": _message(exc)}


def _resolve_each(node: Any, path: list[str], errors: list[dict[str, Any]]) -> None:
    from omegaconf import DictConfig, ListConfig
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if isinstance(node, DictConfig):
        keys: list[Any] = list(node.keys())
    elif isinstance(node, ListConfig):
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        try:
            value = node[key]
        except MissingMandatoryValue:
            continue  # '???' is the tool's to fill in (or to refuse) at run time
        except OmegaConfBaseException as exc:
            errors.append(
                {"kind": "interpolation", "path": [*path, str(key)], "message": _message(exc)}
            )
            continue
        except RecursionError:
            errors.append(
                {
                    "kind": "interpolation",
                    "path": [*path, str(key)],
                    "message": "the interpolation refers to itself (a cycle)",
                }
            )
            continue
        if isinstance(value, (DictConfig, ListConfig)) and not _is_interpolation(node, key):
            _resolve_each(value, [*path, str(key)], errors)


def _is_interpolation(node: Any, key: Any) -> bool:
    from omegaconf import OmegaConf

    try:
        return bool(OmegaConf.is_interpolation(node, key))
    except Exception:
        return False


def _leaves(shape: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """Every key path the experiment sets: leaves, and mappings that are empty."""
    if not isinstance(shape, dict) or (not shape and path):
        return [(path, shape)]
    found: list[tuple[list[str], Any]] = []
    for key, value in shape.items():
        found.extend(_leaves(value, [*path, str(key)]))
    return found


def _declared(path: list[str], declared: list[list[str]]) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in declared)


def _missing_prefix(tree: Any, path: list[str]) -> list[str] | None:
    """The shortest prefix of ``path`` that ``tree`` does not have (None when it has it, or
    when a value that is not a mapping stands on the way: a list or scalar is replaced whole)."""
    node = tree
    for index, part in enumerate(path):
        if not isinstance(node, dict):
            return None
        if part not in node:
            return path[: index + 1]
        node = node[part]
    return None


def _all_paths(tree: Any, path: list[str], found: list[str]) -> list[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            dotted = [*path, str(key)]
            found.append(".".join(dotted))
            if len(found) < 5000:
                _all_paths(value, dotted, found)
    return found


def _suggest(base: Any, path: list[str]) -> str | None:
    """The existing key closest to ``path``: a sibling with a close name, else a key with the
    same or a close name elsewhere in the config."""
    parent: Any = base
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    name = path[-1]
    if isinstance(parent, dict):
        close = difflib.get_close_matches(name, [str(k) for k in parent], n=1, cutoff=0.6)
        if close:
            return ".".join([*path[:-1], close[0]])
    everywhere = _all_paths(base, [], [])
    same = [p for p in everywhere if p.rsplit(".", 1)[-1] == name]
    if same:
        return min(same, key=len)
    depth = len(path)
    peers = [p for p in everywhere if p.count(".") + 1 == depth]
    close = difflib.get_close_matches(".".join(path), peers, n=1, cutoff=0.75)
    return close[0] if close else None


def _dedupe(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    kept = []
    for error in errors:
        ident = json.dumps([error.get("kind"), error.get("path"), error.get("message")])
        if ident not in seen:
            seen.add(ident)
            kept.append(error)
    return kept
