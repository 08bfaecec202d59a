"""What ``--xstash-mlflow`` sends, made acceptable to MLflow: limits, key cleanup, flattened
config and metrics, and how an unreachable server is recognised (report/mlflow_log.py logs)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from xstash_plugin.report.rows import flatten
from xstash_plugin.run.record import RECORD_NAME

INSTALL_HINT = "pip install 'xstash[mlflow]'"
HTTP_TIMEOUT = 5  # seconds, per HTTP request
# MLflow's environment variables, set only while logging and only when unset: a user who set
# them keeps theirs.
HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(HTTP_TIMEOUT),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # "View run ... at: ..." on stdout
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",  # log_batch returns when the server has it
}
# Decided when mlflow is imported: xstash's own use of the client reports nothing to anyone.
IMPORT_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}
GIVE_UP_AFTER = 2  # runs in a row that could not reach the server

MAX_ARTIFACT_BYTES = 1 << 20
ARTIFACTS = ("stdout.log", "stderr.log", RECORD_NAME)
# MLflow's limits (mlflow/utils/validation.py)
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_PARAMS_PER_BATCH = 100  # and tags
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_BYTES = 500_000  # the server refuses a log-batch request of more than 1 MB

FINAL = frozenset({"passed", "failed", "timeout", "error", "interrupted"})
_BAD_KEY_CHARS = re.compile(r"[^\w./\- ]")  # MLflow allows these (and ':' but not on Windows)
_UNREACHABLE = (
    "Connection refused",
    "Failed to establish a new connection",
    "NewConnectionError",
    "Max retries exceeded",
    "Connection aborted",
    "RemoteDisconnected",
    "Name or service not known",
    "nodename nor servname",
    "timed out",
    "ConnectTimeout",
    "ReadTimeout",
)
_UNREACHABLE_TYPES = frozenset(
    {
        "ConnectionError",
        "ConnectionRefusedError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "TimeoutError",
        "NewConnectionError",
        "MaxRetryError",
    }
)


class _Unreachable(Exception):
    """The server could not be reached: nothing more is tried for this run."""


class _NotLogged(Exception):
    """A problem that is not one run's own (the same text for every run it stops)."""


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ while in the block, for the names the user has not set.

    The tools xstash runs inherit os.environ, but they are started from the main thread, never
    while a run is being logged."""
    added = [name for name in values if name not in os.environ]
    for name in added:
        os.environ[name] = values[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unreachable_reason(exc: BaseException) -> str | None:
    """Why the server could not be reached, when that is what ``exc`` says; else None."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 10 and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(e) for e in seen)
    names = {type(e).__name__ for e in seen}
    if not names & _UNREACHABLE_TYPES and not any(word in text for word in _UNREACHABLE):
        return None
    timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT))
    if "timed out" in text or names & {"ConnectTimeout", "ReadTimeout", "Timeout"}:
        return f"no answer within {timeout} s"
    if "Connection refused" in text or "ConnectionRefusedError" in names:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return "cannot connect"


def _error_text(exc: BaseException) -> str:
    text = _first_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: Any) -> str:
    """A param's or tag's value, as YAML would show a scalar (``true``, ``null``, ``0.1``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def mlflow_key(name: str) -> str:
    """``name`` as MLflow accepts a param, metric or tag key: characters it refuses become
    ``_``, and a key that would read as another path (``a//b``, ``..``, ``/a``) loses its
    slashes; a too long one is cut and keeps a hash of the whole."""
    key = _BAD_KEY_CHARS.sub("_", name)
    if posixpath.normpath(key) != key or key.startswith(("/", "..")) or key in ("", "."):
        key = key.replace("/", "_")
        if key.startswith(".") or not key:
            key = "_" + key
    if len(key) > MAX_KEY_LENGTH:
        key = f"{key[: MAX_KEY_LENGTH - 9]}-{_short_hash(name)}"
    return key


def _unique_keys(items: dict[str, Any]) -> dict[str, Any]:
    """Keys made MLflow's; two names that became the same key keep both (a hash tells them
    apart)."""
    found: dict[str, Any] = {}
    for name, value in items.items():
        key = mlflow_key(name)
        if key in found:
            key = mlflow_key(f"{key[: MAX_KEY_LENGTH - 9]}-{_short_hash(name)}")
        found[key] = value
    return found


def flat_config(data: Any, prefix: str = "") -> dict[str, str]:
    """A config as ``{dotted.key: text}``; a list is one value (JSON), an empty mapping
    ``{}``."""
    if isinstance(data, dict) and data:
        flat: dict[str, str] = {}
        for key, value in data.items():
            flat.update(flat_config(value, f"{prefix}{key}."))
        return flat
    return {(prefix[:-1] or "config"): _text(data)}


def finite_metrics(metrics: Any) -> tuple[dict[str, float], int]:
    """The flattened metrics that are finite numbers, and how many others were left out."""
    if not isinstance(metrics, dict):
        return {}, 0
    kept: dict[str, float] = {}
    left = 0
    for name, value in flatten(metrics).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                kept[name] = number
                continue
        left += 1
    return kept, left


def run_uid(record: dict[str, Any], run_dir: Path) -> str:
    """What identifies a run across sessions: its run directory and when it started."""
    try:
        where = str(run_dir.resolve())
    except OSError:
        where = str(run_dir)
    return hashlib.sha256(f"{where}\n{record.get('started')}".encode()).hexdigest()[:24]


def _older_than(version: str, wanted: tuple[int, int]) -> bool:
    found = re.match(r"(\d+)\.(\d+)", version)
    return found is not None and (int(found[1]), int(found[2])) < wanted


def _guard(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(...)``; a server that cannot be reached raises :class:`_Unreachable`."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        reason = _unreachable_reason(exc)
        if reason is not None:
            raise _Unreachable(reason) from exc
        raise


def _ms(seconds: Any) -> int | None:
    number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    return int(seconds * 1000) if number and math.isfinite(seconds) and seconds > 0 else None
