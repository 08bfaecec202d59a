"""``--xstash-mlflow``: finished runs logged to a real MLflow tracking server (``mlflow server``
on a free local port, with its own sqlite store and artifact folder), read back through
MLflow's own client. Skipped where mlflow is not installed (it is an optional extra); the
server itself needs the full ``mlflow`` package, the client only ``mlflow-skinny``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("mlflow")

from helpers import METRICS_EXIT_TOOL, Project
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_param_name

from xstash_plugin import masking
from xstash_plugin.report.mlflow_log import MlflowLogger
from xstash_plugin.report.mlflow_values import INSTALL_HINT, MAX_PARAM_LENGTH, mlflow_key
from xstash_plugin.run.record import RunRecord, Status

SERVER_START_TIMEOUT = 60.0
SERVER_MODULES = ("flask", "sqlalchemy", "alembic")  # in mlflow, not in mlflow-skinny


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The server and its uvicorn workers (one process group, ours): SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # workers still exiting
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server; its URL."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"`mlflow server` needs the full mlflow package (missing {', '.join(missing)}); "
            "only the client (mlflow-skinny) is installed"
        )
    home = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no job runner (it wants huey)
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def client(mlflow_server: str) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server)


def _name(stem: str) -> str:
    """An experiment name of its own per test (the server lives for the whole session)."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def make_run(
    root: Path,
    experiment: str,
    *,
    status: Status = Status.PASSED,
    config: Any = None,
    metrics: dict[str, Any] | None = None,
    point: dict[str, Any] | None = None,
    git: dict[str, Any] | None = None,
    stdout: str = "tool done\n",
    stderr: str = "",
    error: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """A finished run as xstash leaves it: run directory, config as sent, logs, metrics file
    and ``xstash.json`` (written by RunRecord itself). Returns the record as read back."""
    label = ",".join(f"{k}={v}" for k, v in (point or {}).items())
    run_dir = root / f"{experiment}-{uuid.uuid4().hex[:6]}"
    (run_dir / "xstash_config").mkdir(parents=True)
    sent = {"model": {"lr": 0.1}} if config is None else config
    (run_dir / "xstash_config" / "xstash_experiment.yaml").write_text(
        yaml.safe_dump(sent, sort_keys=False), encoding="utf-8"
    )
    (run_dir / "stdout.log").write_text(stdout, encoding="utf-8")
    (run_dir / "stderr.log").write_text(stderr, encoding="utf-8")
    (run_dir / "metrics.json").write_text(json.dumps(metrics or {}), encoding="utf-8")
    started = time.time() - 12.5
    record = RunRecord(
        status=status,
        experiment=experiment,
        config=f"configs/{experiment}.yaml",
        nodeid=f"configs/{experiment}.yaml::{experiment}" + (f"[{label}]" if label else ""),
        tool="trainer",
        tool_path="tools/trainer",
        started=started,
        ended=started + 12.25,
        duration=12.25,
        exit_code=0 if status is Status.PASSED else 1,
        run_key=f"key-{uuid.uuid4().hex[:10]}",
        git=git,
        point=point,
        metrics=metrics,
        error=error,
        tags=["smoke"],
    )
    record.save(run_dir)
    return json.loads((run_dir / "xstash.json").read_text(encoding="utf-8")), run_dir


def runs_of(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    return list(client.search_runs([found.experiment_id], order_by=["start_time ASC"]))


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    paths = set()
    for info in client.list_artifacts(run_id, folder):
        if info.is_dir:
            paths |= artifact_paths(client, run_id, info.path)
        else:
            paths.add(info.path)
    return paths


def downloaded(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> str:
    local = client.download_artifacts(run_id, path, str(tmp_path / uuid.uuid4().hex))
    return Path(local).read_text(encoding="utf-8")


# --- against a real server --------------------------------------------------------------------


def test_passed_run_params_metrics_tags_artifacts(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    experiment = _name("mlp")
    config = {
        "model": {"lr": 0.01, "layers": [64, 32], "name": "mlp", "head": {}},
        "data": {"path": "/data/train", "shuffle": True},
        "seed": 1,
        "opt@beta": 0.9,  # '@' is not allowed in an MLflow key
        "nothing": None,
        "long": "x" * 7000,  # over MLflow's 6000 characters
    }
    metrics = {"acc": 0.93, "loss": {"train": 0.2, "val": math.nan}, "note": "hi", "ok": True}
    record, run_dir = make_run(
        tmp_path,
        experiment,
        config=config,
        metrics=metrics,
        point={"lr": 0.01, "seed": 1},
        git={"commit": "0123abcd", "dirty": True},
        stderr="a warning\n",
    )
    logger = MlflowLogger(mlflow_server)
    assert logger.log_run(record, run_dir) is None
    assert logger.problems == []

    (run,) = runs_of(client, experiment)
    info, data = run.info, run.data
    assert info.status == "FINISHED"
    assert info.run_name == f"{experiment}[lr=0.01,seed=1]"
    assert info.start_time == int(record["started"] * 1000)
    assert info.end_time == int(record["ended"] * 1000)
    assert data.params == {
        "model.lr": "0.01",
        "model.layers": "[64, 32]",
        "model.name": "mlp",
        "model.head": "{}",
        "data.path": "/data/train",
        "data.shuffle": "true",
        "seed": "1",
        "opt_beta": "0.9",
        "nothing": "null",
        "long": "x" * (MAX_PARAM_LENGTH - 1) + "…",
    }
    assert data.metrics == {"acc": 0.93, "loss.train": 0.2}  # finite numbers only
    tags = data.tags
    assert {
        "xstash.experiment": experiment,
        "xstash.config": f"configs/{experiment}.yaml",
        "xstash.nodeid": record["nodeid"],
        "xstash.tool": "trainer",
        "xstash.status": "passed",
        "xstash.run_key": record["run_key"],
        "xstash.git.commit": "0123abcd",
        "mlflow.source.git.commit": "0123abcd",
        "xstash.git.dirty": "true",
        "xstash.point": '{"lr": 0.01, "seed": 1}',
        "point.lr": "0.01",
        "point.seed": "1",
        "xstash.run_dir": str(run_dir),
        "xstash.exit_code": "0",
        "xstash.tags": '["smoke"]',
    }.items() <= tags.items()
    assert "cut to 6000" in tags["xstash.params_note"]
    assert tags["xstash.metrics_note"].startswith("3 metric(s)")
    assert "xstash.artifacts_skipped" not in tags
    assert artifact_paths(client, info.run_id) == {
        "xstash.json",
        "stdout.log",
        "stderr.log",
        "metrics.json",
        "xstash_config/xstash_experiment.yaml",
    }
    assert downloaded(client, info.run_id, "xstash.json", tmp_path) == (
        run_dir / "xstash.json"
    ).read_text(encoding="utf-8")
    sent = downloaded(client, info.run_id, "xstash_config/xstash_experiment.yaml", tmp_path)
    assert yaml.safe_load(sent) == config


def test_failed_and_timed_out_runs(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    """Three runs of one experiment: one MLflow experiment, three runs; any end but passed is
    FAILED; a log over 1 MiB stays out and a tag says so."""
    experiment = _name("sweep")
    runs = [
        make_run(tmp_path, experiment, point={"seed": 0}, metrics={"acc": 0.9}),
        make_run(
            tmp_path,
            experiment,
            status=Status.FAILED,
            point={"seed": 1},
            metrics={"acc": 0.1},
            stderr="E" * (3 << 19),  # 1.5 MiB
            error="the tool exited with 1",
        ),
        make_run(tmp_path, experiment, status=Status.TIMEOUT, point={"seed": 2}),
    ]
    logger = MlflowLogger(mlflow_server)
    for record, run_dir in runs:
        assert logger.log_run(record, run_dir) is None
    assert logger.problems == []

    logged = {run.data.tags["point.seed"]: run for run in runs_of(client, experiment)}
    assert sorted(logged) == ["0", "1", "2"]
    assert [logged[seed].info.status for seed in "012"] == ["FINISHED", "FAILED", "FAILED"]
    assert [logged[seed].data.tags["xstash.status"] for seed in "012"] == [
        "passed",
        "failed",
        "timeout",
    ]
    failed = logged["1"]
    assert failed.data.metrics == {"acc": 0.1}
    assert failed.data.tags["xstash.error"] == "the tool exited with 1"
    assert failed.data.tags["xstash.artifacts_skipped"] == "stderr.log (1.5 MiB > 1 MiB)"
    assert "stderr.log" not in artifact_paths(client, failed.info.run_id)
    assert "xstash.git.commit" not in failed.data.tags  # the record had no git
    assert "xstash.log_problems" not in failed.data.tags


def test_a_run_is_logged_once(mlflow_server: str, client: MlflowClient, tmp_path: Path) -> None:
    """A later session that reuses the run (same run directory, same start) does not log it
    again."""
    experiment = _name("once")
    record, run_dir = make_run(tmp_path, experiment, metrics={"acc": 1.0})
    assert MlflowLogger(mlflow_server).log_run(record, run_dir) is None
    assert MlflowLogger(mlflow_server).log_run(record, run_dir) is None
    assert len(runs_of(client, experiment)) == 1


def test_many_params_and_metrics_are_batched(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    """Over MLflow's per-request limits (100 params, 1000 metrics, 1 MB): all of them land."""
    experiment = _name("wide")
    config = {
        f"group{g}": {f"key{k}": f"{'v' * 5000}{g}.{k}" for k in range(25)} for g in range(10)
    }
    metrics = {f"m{i}": i / 7 for i in range(1500)}
    record, run_dir = make_run(tmp_path, experiment, config=config, metrics=metrics)
    logger = MlflowLogger(mlflow_server)
    assert logger.log_run(record, run_dir) is None, logger.problems
    run = client.get_run(runs_of(client, experiment)[0].info.run_id)
    assert len(run.data.params) == 250
    assert run.data.params["group9.key24"] == "v" * 5000 + "9.24"
    assert len(run.data.metrics) == 1500
    assert run.data.metrics["m1499"] == pytest.approx(1499 / 7)


def test_secrets_are_masked(
    mlflow_server: str, client: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-value-1234"
    monkeypatch.setattr(masking, "_masker", masking.Masker([secret]))
    experiment = _name("secret")
    record, run_dir = make_run(
        tmp_path,
        experiment,
        config={"api": {"token": secret, "url": f"https://user:{secret}@host"}},
        stdout=f"using {secret}\n",
        error=f"auth failed for {secret}",
    )
    assert MlflowLogger(mlflow_server).log_run(record, run_dir) is None
    (run,) = runs_of(client, experiment)
    assert run.data.params == {"api.token": "***", "api.url": "https://user:***@host"}
    assert run.data.tags["xstash.error"] == "auth failed for ***"
    for path in ("stdout.log", "xstash_config/xstash_experiment.yaml", "xstash.json"):
        text = downloaded(client, run.info.run_id, path, tmp_path)
        assert secret not in text
    assert downloaded(client, run.info.run_id, "stdout.log", tmp_path) == "using ***\n"
    # the run directory itself is left as it was
    assert secret in (run_dir / "stdout.log").read_text(encoding="utf-8")


def test_symbolic_links_are_not_uploaded(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    """A tool that leaves a link as its metrics file does not get another file uploaded."""
    private = tmp_path / "private.txt"
    private.write_text("not for the server\n", encoding="utf-8")
    experiment = _name("link")
    record, run_dir = make_run(tmp_path, experiment)
    (run_dir / "metrics.json").unlink()
    (run_dir / "metrics.json").symlink_to(private)
    assert MlflowLogger(mlflow_server).log_run(record, run_dir) is None
    (run,) = runs_of(client, experiment)
    assert "metrics.json" not in artifact_paths(client, run.info.run_id)
    assert run.data.tags["xstash.artifacts_skipped"] == "metrics.json (not a regular file)"


def test_a_deleted_experiment_is_a_warning(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    experiment = _name("gone")
    client.delete_experiment(client.create_experiment(experiment))
    record, run_dir = make_run(tmp_path, experiment)
    logger = MlflowLogger(mlflow_server)
    warning = logger.log_run(record, run_dir)
    assert warning is not None and "is deleted" in warning
    assert logger.log_run(record, run_dir) == warning
    assert logger.problems == [warning]  # said once


def test_a_run_that_has_not_ended_is_not_logged(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    experiment = _name("running")
    record, run_dir = make_run(tmp_path, experiment, status=Status.RUNNING)
    warning = MlflowLogger(mlflow_server).log_run(record, run_dir)
    assert warning is not None and "not ended" in warning
    assert client.get_experiment_by_name(experiment) is None


# --- without a server -------------------------------------------------------------------------


def test_unreachable_server_is_a_quick_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed port: a warning, fast, never an exception; after two runs in a row that could
    not reach it, the rest are not tried."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    record, run_dir = make_run(tmp_path, "exp")
    logger = MlflowLogger(f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    warnings = [logger.log_run(record, run_dir) for _ in range(5)]
    assert time.monotonic() - started < 15
    assert warnings[0] is not None and "connection refused" in warnings[0]
    assert set(warnings) == {warnings[0]}
    assert logger.problems == [warnings[0]]


def test_a_server_that_never_answers_is_a_warning_in_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port that accepts connections but never answers: each request times out after a few
    seconds (not MLflow's default two minutes and seven retries)."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    record, run_dir = make_run(tmp_path, "exp")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        logger = MlflowLogger(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        first = logger.log_run(record, run_dir)
        assert time.monotonic() - started < 15
        assert first is not None and "no answer within" in first
        logger.log_run(record, run_dir)
        started = time.monotonic()
        assert logger.log_run(record, run_dir) == first  # given up: not tried again
        assert time.monotonic() - started < 1
    assert logger.problems == [first]
    # MLflow's settings were set for the calls only (the tools xstash starts inherit os.environ)
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_without_mlflow_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("mlflow", "mlflow.tracking", "mlflow.entities"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: as if not installed
    logger = MlflowLogger("http://127.0.0.1:5000")
    assert len(logger.problems) == 1
    assert "pip install 'xstash[mlflow]'" in logger.problems[0]
    assert INSTALL_HINT == "pip install 'xstash[mlflow]'"
    record, run_dir = make_run(tmp_path, "exp")
    assert logger.log_run(record, run_dir) == logger.problems[0]
    assert len(logger.problems) == 1


def test_host_and_port_without_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow would take ``localhost:5000`` for a folder and write a file store there."""
    monkeypatch.chdir(tmp_path)
    logger = MlflowLogger("localhost:5000")
    assert logger.problems and "http://localhost:5000" in logger.problems[0]
    record, run_dir = make_run(tmp_path, "exp")
    assert logger.log_run(record, run_dir) == logger.problems[0]
    assert not (tmp_path / "localhost:5000").exists()


@pytest.mark.parametrize(
    "name",
    [
        "a.b",
        "opt@beta",
        "a//b",
        "../x",
        "/abs",
        "",
        ".",
        "..",
        "x/./y",
        "trailing/",
        "é/ü",
        "k" * 300,
    ],
)
def test_keys_mlflow_accepts(name: str) -> None:
    key = mlflow_key(name)
    _validate_param_name(key)  # type: ignore[no-untyped-call]  # raises if MLflow refuses it
    assert len(key) <= 250
    assert mlflow_key("train/loss") == "train/loss"  # slashes are fine where they are


def test_a_session_logs_its_runs(
    mlflow_server: str, client: MlflowClient, project: Project, hydra_python: str
) -> None:
    """`pytest --xstash-mlflow URI`: every finished run of the session is in MLflow after it."""
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    name = _name("session")
    project.config(
        "m.yaml",
        f"tool: t\nexperiment: {name}\ncode: 0\nmetrics: {{acc: 0.9, deep: {{f1: 0.5}}}}\n"
        "xstash:\n  sweep:\n    code: [0, 3]\n",
    )
    result = project.pytester.runpytest(
        "configs", "-p", "no:cacheprovider", "-n", "2", "--xstash-mlflow", mlflow_server
    )
    result.assert_outcomes(passed=1, failed=1)
    runs = runs_of(client, name)
    by_code = {run.data.tags["point.code"]: run for run in runs}
    assert sorted(by_code) == ["0", "3"]
    assert by_code["0"].data.metrics == {"acc": 0.9, "deep.f1": 0.5}
    assert (by_code["0"].info.status, by_code["3"].info.status) == ("FINISHED", "FAILED")
    assert by_code["3"].data.tags["xstash.status"] == "failed"


def test_an_unreachable_server_is_a_warning_for_the_session(
    project: Project, hydra_python: str
) -> None:
    project.tool("t", METRICS_EXIT_TOOL, env=hydra_python, deps=None)
    project.config("m.yaml", "tool: t\nexperiment: m\nmetrics: {acc: 0.9}\n")
    url = f"http://127.0.0.1:{_free_port()}"
    result = project.pytester.runpytest("configs", "-p", "no:cacheprovider", "--xstash-mlflow", url)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*warning: --xstash-mlflow {url}: *"])
