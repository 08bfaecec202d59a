"""The run record, ``xstash.json``: one typed schema, one writer.

Every run directory holds the record of its run: who ran what, how it ended, what it measured.
Users read it, ``--xstash-reuse`` and the reports read it; :class:`RunRecord` is the only thing
that writes it (:meth:`RunRecord.save`, atomic). The result row of the terminal table and the
report files, and the run's JUnit properties, are derived from it (:func:`row_of`,
:func:`run_properties`), so the three never disagree.

Fields that are ``None`` are left out of the file unless they are part of every finished
record (:data:`NULL_SHOWN`); keys this version does not know (a newer or older xstash wrote
them) are kept in ``extra`` and written back unchanged. ``xstash_plugin/run/record.schema.json``
is the JSON Schema of the file, generated from this class (``python -m
xstash_plugin.run.record``) and checked against it by the test suite.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstash_plugin.fsutil import atomic_write
from xstash_plugin.masking import mask_data
from xstash_plugin.report.rows import flatten, fmt

RECORD_NAME = "xstash.json"
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("record.schema.json")


class Status(str, enum.Enum):
    """Where a run is. ``running`` and ``submitted`` are not final."""

    RUNNING = "running"
    SUBMITTED = "submitted"  # a detached SLURM job; a later session collects it
    PASSED = "passed"
    FAILED = "failed"  # the tool failed, or an expectation did
    TIMEOUT = "timeout"
    ERROR = "error"  # xstash could not run it, or whoever ran it died
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, -x

    def __str__(self) -> str:
        return self.value


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass
class RunRecord:
    """One run, as ``xstash.json`` holds it (see the README's table of its fields)."""

    # What ran
    status: Status = field(metadata=_doc("see Status"))
    experiment: str = field(metadata=_doc("the experiment's name"))
    config: str = field(metadata=_doc("the config file, relative to the rootdir"))
    nodeid: str = field(metadata=_doc("the pytest node id"))
    tool: str = field(metadata=_doc("the tool's name in meta.yaml"))
    tool_path: str = field(metadata=_doc("the tool's folder"))
    started: float = field(metadata=_doc("when the run was prepared (Unix time)"))
    schema_version: int = SCHEMA_VERSION
    config_key: str | None = field(default=None, metadata=_doc("hash of the config as sent"))
    point: dict[str, Any] | None = field(default=None, metadata=_doc("the sweep point"))
    seed_key: str | None = field(default=None, metadata=_doc("the point's key that is its seed"))
    overrides: list[str] = field(default_factory=list, metadata=_doc("Hydra overrides"))
    tags: list[str] = field(default_factory=list, metadata=_doc("the experiment's tags"))
    cwd: str | None = None
    host: str | None = None
    python: str | None = field(default=None, metadata=_doc("the Python running pytest"))
    launcher: str = "local"
    # Who runs it (see stale.py)
    worker_pid: int | None = None
    worker_identity: str | None = None
    session: str | None = None
    tool_pid: int | None = None
    tool_identity: str | None = None
    run_token: str | None = field(default=None, metadata=_doc("XSTASH_RUN of its processes"))
    preloaded: bool | None = None
    # How: command, provenance, limits
    argv: list[str] | None = None
    run_key: str | None = field(default=None, metadata=_doc("what --xstash-reuse matches"))
    key_ingredients: dict[str, Any] | None = field(
        default=None,
        metadata=_doc(
            "each ingredient of the run key and its hash: tool, code, dependencies, config, "
            "overrides, inputs, upstream"
        ),
    )
    key_details: dict[str, Any] | None = field(
        default=None,
        metadata=_doc(
            "what explains a changed ingredient: the dependency files' and inputs' digests, "
            "the config's values flattened (the tool's files: .xstash/trees/<code hash>.json)"
        ),
    )
    rerun_reason: str | None = field(
        default=None,
        metadata=_doc(
            "--xstash-reuse: why it ran again, against the newest passed run of the same "
            "experiment and point"
        ),
    )
    git: dict[str, Any] | None = field(default=None, metadata=_doc("commit and dirty flag"))
    dependency_hash: str | None = None
    tool_python: str | None = None
    tool_python_version: str | None = None
    uv: str | None = None
    environment_hash: str | None = field(
        default=None, metadata=_doc("hash of the tool environment's resolved packages")
    )
    environment_path: str | None = field(
        default=None,
        metadata=_doc("those packages, once per environment: <output root>/.xstash/environments"),
    )
    tool_diff: str | None = field(
        default=None,
        metadata=_doc("the file in the run directory with the tool folder's uncommitted diff"),
    )
    timeout: float | None = None
    timeout_source: str | None = None
    # How it ended
    ended: float | None = None
    duration: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    metrics: dict[str, Any] | None = None
    metrics_error: str | None = None
    metrics_note: str | None = None
    expectations: list[dict[str, Any]] | None = None
    baseline: list[dict[str, Any]] | None = field(
        default=None, metadata=_doc("each metric against --xstash-baseline")
    )
    escaped: list[str] | None = field(default=None, metadata=_doc("processes that left"))
    error: str | None = None
    closed_by: str | None = field(default=None, metadata=_doc("the session that closed it"))
    # SLURM
    job_id: str | None = None
    slurm_folder: str | None = None
    slurm_state: str | None = None
    packed: bool | None = field(
        default=None, metadata=_doc("ran inside a shared allocation (job_id is the allocation)")
    )
    resources: dict[str, Any] | None = None
    slots: dict[str, Any] | None = field(
        default=None, metadata=_doc("local GPUs, CPUs and memory the run held")
    )
    attached_by: str | None = None
    # Keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})

    def update(self, **values: Any) -> None:
        """Set fields by name; an unknown name is a programming error, never a new key."""
        for name, value in values.items():
            if name not in _FIELDS or name == "extra":
                raise AttributeError(f"RunRecord has no field {name!r}")
            if name == "status":
                value = Status(value)
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in _FIELDS:
            if name == "extra":
                continue
            value = getattr(self, name)
            if value is None and name not in NULL_SHOWN:
                continue
            data[name] = value.value if isinstance(value, Status) else value
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """A record as read back; missing fields get their defaults, unknown keys go to
        ``extra``, an unknown status is kept as ``error`` with the original in ``extra``."""
        known = {k: v for k, v in data.items() if k in _FIELDS and k != "extra"}
        extra = {k: v for k, v in data.items() if k not in _FIELDS or k == "extra"}
        try:
            known["status"] = Status(known.get("status"))
        except ValueError:
            extra["status_unknown"] = known.get("status")
            known["status"] = Status.ERROR
        for name in _REQUIRED:
            known.setdefault(name, 0.0 if name == "started" else "")
        return cls(**known, extra=extra)

    def save(self, run_dir: Path) -> None:
        """Write ``xstash.json`` atomically (temp file + rename): readers never see half a
        record. Secrets are masked (see masking.py)."""
        text = json.dumps(mask_data(self.to_json()), indent=2, default=str, ensure_ascii=False)
        atomic_write(run_dir / RECORD_NAME, text)

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        data = json.loads((run_dir / RECORD_NAME).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return cls.from_json(data)


_FIELDS = {f.name: f for f in dataclasses.fields(RunRecord)}
_REQUIRED = [
    f.name
    for f in dataclasses.fields(RunRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
]
# Written even when null: part of every finished record.
NULL_SHOWN = frozenset(
    {
        "config_key",
        "point",
        "signal",
        "metrics",
        "metrics_error",
        "metrics_note",
        "expectations",
        "git",
        "dependency_hash",
        "tool_python",
        "tool_python_version",
        "uv",
        "timeout",
        "timeout_source",
    }
)


def mark_ended(run_dir: Path, status: Status, error: str, ended: float, **more: Any) -> bool:
    """Close a record that still says ``running`` (it may have changed since it was read):
    for whoever finds a run that its own process could not finish. True if it was closed."""
    try:
        record = RunRecord.load(run_dir)
    except (OSError, ValueError):
        return False
    if record.status is not Status.RUNNING:
        return False
    record.update(status=status, error=error, ended=ended, **more)
    record.save(run_dir)
    return True


# --- what is derived from the record ---------------------------------------------------------


def row_of(record: RunRecord, run_dir: Path | None, **item: Any) -> dict[str, Any]:
    """The result row (terminal table, report files) of a run. ``item`` adds what only the
    session knows: ``order``, ``estimated_runtime``, ``estimated_seconds``, ``id``..."""
    row: dict[str, Any] = {
        "id": record.nodeid,
        "experiment": record.experiment,
        "config": record.config,
        "tool": record.tool,
        "tags": list(record.tags),
        "point": record.point or {},
        "overrides": list(record.overrides),
        "status": str(record.status),
        "estimated_runtime": None,
        "estimated_seconds": None,
        "duration": record.duration,
        "exit_code": record.exit_code,
        "metrics": record.metrics or {},
        "verdicts": list(record.expectations or []),
        **({} if record.baseline is None else {"baseline": list(record.baseline)}),
        "run_dir": str(run_dir) if run_dir is not None else None,
        "order": 10**9,
        **({} if record.rerun_reason is None else {"rerun_reason": record.rerun_reason}),
    }
    row.update(item)
    return row


def run_properties(
    record: RunRecord, run_dir: Path | None, reused_from: Path | None = None
) -> list[tuple[str, str]]:
    """A run's JUnit properties: where it is, how it ended, what it measured and how that was
    judged (``ok: 0.93 vs >= 0.9``)."""
    found: list[tuple[str, str]] = []
    if reused_from is not None:
        found.append(("reused_from", str(reused_from)))
    if run_dir is not None:
        found.append(("run_dir", str(run_dir)))
    if record.job_id is not None and reused_from is None:
        found.append(("job_id", record.job_id))
    if record.rerun_reason is not None and reused_from is None:
        found.append(("rerun_reason", record.rerun_reason))
    if record.exit_code is not None:
        found.append(("exit_code", str(record.exit_code)))
        found.append(("duration", f"{float(record.duration or 0):.3f}"))
    for name, value in flatten(record.metrics or {}).items():
        found.append((f"metric.{name}", fmt(value)))
    for verdict in record.expectations or []:
        ok, note, measured = verdict.get("ok"), verdict.get("note"), verdict.get("measured")
        word = "ok" if ok else f"FAIL ({note})" if note else "FAIL"
        shown = "-" if measured is None else fmt(measured)
        found.append((f"expect.{verdict['metric']}", f"{word}: {shown} vs {verdict['expected']}"))
    return found


# --- the JSON Schema -------------------------------------------------------------------------


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        if type(None) in args:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema
    if hint is Status:
        return {"enum": [s.value for s in Status]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin is dict or hint is dict:
        return {"type": "object"}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    return {}  # Any


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``xstash.json``."""
    hints = typing.get_type_hints(RunRecord)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(RunRecord):
        if f.metadata.get("internal"):
            continue
        schema = _type_schema(hints[f.name])
        if f.metadata.get("doc"):
            schema = {"description": f.metadata["doc"], **schema}
        properties[f.name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "xstash-run-record",
        "title": "xstash run record (xstash.json)",
        "type": "object",
        "required": _REQUIRED,
        "properties": properties,
        "additionalProperties": True,
    }


def main() -> int:
    """``python -m xstash_plugin.run.record``: write (or with --check, compare) the schema."""
    text = json.dumps(json_schema(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        ok = SCHEMA_PATH.read_text(encoding="utf-8") == text
        print("schema up to date" if ok else f"{SCHEMA_PATH} is stale: run without --check")
        return 0 if ok else 1
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
