"""The run record's schema: one class, its JSON Schema shipped beside it and kept in step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from xstash_plugin.run.record import SCHEMA_PATH, RunRecord, Status, json_schema, mark_ended


def test_the_shipped_schema_is_the_one_the_class_makes() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema()
    out = subprocess.run(
        [sys.executable, "-m", "xstash_plugin.run.record", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _record(**more: object) -> RunRecord:
    return RunRecord(
        status=Status.RUNNING,
        experiment="e",
        config="configs/e.yaml",
        nodeid="configs/e.yaml::e",
        tool="t",
        tool_path="/x/tools/t",
        started=1.0,
        **more,  # type: ignore[arg-type]
    )


def test_a_record_round_trips_and_keeps_keys_it_does_not_know(tmp_path: Path) -> None:
    record = _record(point={"lr": 0.1})
    record.save(tmp_path)
    data = json.loads((tmp_path / "xstash.json").read_text())
    assert data["status"] == "running" and data["schema_version"] == 1
    assert "argv" not in data and "job_id" not in data  # None fields that are not always there
    assert data["metrics"] is None  # ... and those that are
    data["from_a_newer_xstash"] = {"x": 1}
    (tmp_path / "xstash.json").write_text(json.dumps(data))
    again = RunRecord.load(tmp_path)
    assert again.point == {"lr": 0.1} and again.status is Status.RUNNING
    again.save(tmp_path)
    assert json.loads((tmp_path / "xstash.json").read_text())["from_a_newer_xstash"] == {"x": 1}
    jsonschema.validate(json.loads((tmp_path / "xstash.json").read_text()), json_schema())


def test_fields_are_set_by_name_only_and_statuses_are_the_enum() -> None:
    record = _record()
    with pytest.raises(AttributeError, match="no field 'statu'"):
        record.update(statu="passed")
    with pytest.raises(ValueError):
        record.update(status="done")
    record.update(status="passed")
    assert record.status is Status.PASSED
    bad = dict(record.to_json(), status="done")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schema())


def test_mark_ended_closes_only_running_records(tmp_path: Path) -> None:
    _record().save(tmp_path)
    assert mark_ended(tmp_path, Status.ERROR, "gone", 2.0)
    assert not mark_ended(tmp_path, Status.ERROR, "again", 3.0)  # already final
    record = RunRecord.load(tmp_path)
    assert (record.status, record.error, record.ended) == (Status.ERROR, "gone", 2.0)
