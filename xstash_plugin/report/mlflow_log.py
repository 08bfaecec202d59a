"""``--xstash-mlflow URI``: every finished run logged to an MLflow tracking server, for those who
already read their results in MLflow's UI.

mlflow is optional (``pip install 'xstash[mlflow]'``, which brings the client-only
``mlflow-skinny``); it is imported only here, only when the option is given. Nothing here ever
raises or fails the session: a problem is a warning text (:attr:`MlflowLogger.problems`).

Per xstash run, one MLflow run, in the MLflow experiment named after the xstash experiment
(created when missing):

- params: the tool's config as sent (``xstash_config/xstash_experiment.yaml``), flattened to
  dotted keys, values as YAML would write them (``true``, ``null``, lists as JSON), cut to
  MLflow's length limit;
- metrics: the record's metrics, flattened, finite numbers only;
- tags: ``xstash.experiment``, ``xstash.config``, ``xstash.nodeid``, ``xstash.tool``,
  ``xstash.status``, ``xstash.run_key``, ``xstash.git.commit`` (and MLflow's own
  ``mlflow.source.git.commit``), ``xstash.git.dirty``, ``xstash.point`` (JSON) and one
  ``point.<name>`` per sweep axis, ``xstash.run_dir``, ``xstash.run_uid`` (what makes a run
  logged once only, even when a later session reuses it), and notes on what was left out;
- artifacts: ``xstash.json``, ``stdout.log``, ``stderr.log``, the metrics file and the config
  as sent, each up to 1 MiB (bigger ones, and symbolic links, are left out: the tag
  ``xstash.artifacts_skipped`` says which);
- status ``FINISHED`` for a passed run, ``FAILED`` for any other end; start and end times are
  the run's own.

Secret values are masked as everywhere else (masking.py), in params, tags and artifacts.

Each HTTP request gets a short timeout and no retry (MLflow's own
``MLFLOW_HTTP_REQUEST_TIMEOUT``/``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, set only while logging and
only when the user has not set them), and after :data:`GIVE_UP_AFTER` runs in a row that
could not reach the server, the rest are not tried: an unreachable server costs seconds, not
minutes.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from xstash_plugin.masking import mask, mask_data
from xstash_plugin.report.mlflow_values import (
    ARTIFACTS,
    FINAL,
    GIVE_UP_AFTER,
    HTTP_ENV,
    IMPORT_ENV,
    INSTALL_HINT,
    MAX_ARTIFACT_BYTES,
    MAX_BATCH_BYTES,
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_LENGTH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAG_LENGTH,
    _cut,
    _environ,
    _error_text,
    _guard,
    _ms,
    _NotLogged,
    _older_than,
    _text,
    _unique_keys,
    _Unreachable,
    finite_metrics,
    flat_config,
    run_uid,
)
from xstash_plugin.run.judge import DEFAULT_METRICS
from xstash_plugin.run.rundir import CONFIG_DIR, CONFIG_NAME


class MlflowLogger:
    """Logs finished xstash runs to the MLflow tracking server at ``uri``.

    :meth:`log_run` never raises; what went wrong is its return value and, once per distinct
    text, in :attr:`problems`."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.problems: list[str] = []
        self.disabled: str | None = None  # why nothing is logged
        self._unreachable_runs = 0
        self._experiments: dict[str, str] = {}
        self._client: Any = None
        self._entities: Any = None
        self._old_client = False  # before 3.7: artifacts go by the global tracking URI
        if re.fullmatch(r"[\w.-]+:\d+(/.*)?", uri):
            self.disabled = self._problem(
                f"{uri!r} is not a tracking URI (MLflow would take it for a folder): "
                f"did you mean http://{uri} ?"
            )
            return
        try:
            with _environ(IMPORT_ENV):
                version = str(getattr(importlib.import_module("mlflow"), "__version__", ""))
                tracking = importlib.import_module("mlflow.tracking")
                self._entities = importlib.import_module("mlflow.entities")
            self._old_client = _older_than(version, (3, 7))
        except Exception as exc:
            self.disabled = self._problem(
                f"cannot import mlflow ({_error_text(exc)}): runs are not logged to MLflow; "
                f"install it with {INSTALL_HINT}"
            )
            return
        try:
            with _environ(HTTP_ENV):
                self._client = tracking.MlflowClient(tracking_uri=uri)
        except Exception as exc:
            self.disabled = self._problem(f"cannot use this tracking URI: {_error_text(exc)}")

    def _problem(self, text: str) -> str:
        if text not in self.problems:
            self.problems.append(text)
        return text

    def log_run(self, record: dict[str, Any], run_dir: Path) -> str | None:
        """Log one run (its record as ``xstash.json`` holds it, and its run directory); a
        warning text when something could not be logged, None when all went well. A run
        already logged (same run directory, same start) is not logged again."""
        if self.disabled is not None:
            return self.disabled
        try:
            status = str(record.get("status"))
            if status not in FINAL:
                return self._problem(
                    "runs that have not ended (running, or submitted to SLURM) are not logged "
                    "to MLflow"
                )
            with _environ(HTTP_ENV):
                warning = self._log(record, Path(run_dir), status)
        except _Unreachable as exc:
            self._unreachable_runs += 1
            text = f"cannot reach the MLflow server ({exc}): runs are not logged"
            if self._unreachable_runs >= GIVE_UP_AFTER:
                self.disabled = text
            return self._problem(text)
        except _NotLogged as exc:
            self._unreachable_runs = 0
            return self._problem(str(exc))
        except Exception as exc:  # never fail the session for MLflow's sake
            self._unreachable_runs = 0
            name = record.get("nodeid") or str(run_dir)
            return self._problem(f"{name}: not logged: {_error_text(exc)}")
        self._unreachable_runs = 0
        return None if warning is None else self._problem(warning)

    # --- one run --------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client call; a server that cannot be reached raises :class:`_Unreachable`."""
        return _guard(getattr(self._client, method), *args, **kwargs)

    def _experiment_id(self, name: str) -> str:
        if name in self._experiments:
            return self._experiments[name]
        experiment = self._call("get_experiment_by_name", name)
        if experiment is None:
            try:
                experiment_id = str(self._call("create_experiment", name))
            except _Unreachable:
                raise
            except Exception as exc:  # another process created it meanwhile
                experiment = self._call("get_experiment_by_name", name)
                if experiment is None:
                    raise exc from None
                experiment_id = str(experiment.experiment_id)
        elif getattr(experiment, "lifecycle_stage", "active") == "deleted":
            raise _NotLogged(
                f"the MLflow experiment {name!r} is deleted: restore it, or delete it for good, "
                "to log its runs"
            )
        else:
            experiment_id = str(experiment.experiment_id)
        self._experiments[name] = experiment_id
        return experiment_id

    def _logged_before(self, experiment_id: str, uid: str) -> bool:
        """True if the run is in MLflow already; a half-logged one (still RUNNING: the logging
        was cut short) is deleted, to be logged again."""
        found = self._call(
            "search_runs", [experiment_id], filter_string=f"tags.`xstash.run_uid` = '{uid}'"
        )
        done = False
        for run in found:
            if run.info.status == "RUNNING":
                self._call("delete_run", run.info.run_id)
            else:
                done = True
        return done

    def _log(self, record: dict[str, Any], run_dir: Path, status: str) -> str | None:
        name = str(record.get("experiment") or "xstash")
        try:
            experiment_id = self._experiment_id(name)
        except (_Unreachable, _NotLogged):
            raise
        except Exception as exc:
            raise _NotLogged(f"runs of {name} are not logged: {_error_text(exc)}") from exc
        uid = run_uid(record, run_dir)
        if self._logged_before(experiment_id, uid):
            return None
        params, param_notes = self._params(run_dir)
        metrics, left_out = finite_metrics(record.get("metrics"))
        artifacts, skipped = self._artifacts(run_dir)
        tags = self._tags(record, run_dir)
        if param_notes:
            tags["xstash.params_note"] = "; ".join(param_notes)
        if left_out:
            tags["xstash.metrics_note"] = f"{left_out} metric(s) not finite numbers: not logged"
        if skipped:
            tags["xstash.artifacts_skipped"] = "; ".join(skipped)
        nodeid = str(record.get("nodeid") or "")
        run = self._call(
            "create_run",
            experiment_id,
            start_time=_ms(record.get("started")),
            tags={"xstash.run_uid": uid},
            run_name=_cut(nodeid.partition("::")[2] or nodeid or name, MAX_TAG_LENGTH),
        )
        run_id = run.info.run_id
        upload = self._uploader(run_id, str(run.info.artifact_uri or ""))
        problems: list[str] = []
        ended = _ms(record.get("ended")) or int(time.time() * 1000)
        for batch in self._batches(params, metrics, tags, ended):
            try:
                self._call("log_batch", run_id, **batch)
            except _Unreachable:
                raise
            except Exception as exc:
                problems.append(f"some params, metrics or tags: {_error_text(exc)}")
        for path, folder in artifacts:
            try:
                self._upload(upload, path, folder)
            except _Unreachable:
                raise
            except Exception as exc:
                problems.append(f"artifact {path.name}: {_error_text(exc)}")
        if problems:
            note = _cut("; ".join(problems), MAX_TAG_LENGTH)
            with contextlib.suppress(Exception):
                self._call("set_tag", run_id, "xstash.log_problems", note)
        self._call(
            "set_terminated", run_id, "FINISHED" if status == "passed" else "FAILED", end_time=ended
        )
        if problems:
            where = nodeid or str(run_dir)
            return f"{where}: logged to MLflow only in part: {'; '.join(problems)}"
        return None

    def _params(self, run_dir: Path) -> tuple[dict[str, str], list[str]]:
        path = run_dir / CONFIG_DIR / f"{CONFIG_NAME}.yaml"
        notes: list[str] = []
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, [f"no {CONFIG_DIR}/{path.name}: no params"]
        except (OSError, ValueError, yaml.YAMLError) as exc:
            return {}, [f"{CONFIG_DIR}/{path.name} unreadable ({_error_text(exc)}): no params"]
        if data is None:
            return {}, notes
        params = {}
        cut = 0
        for key, value in _unique_keys(flat_config(mask_data(data))).items():
            text = mask(value)
            if len(text) > MAX_PARAM_LENGTH:
                cut += 1
            params[key] = _cut(text, MAX_PARAM_LENGTH)
        if cut:
            notes.append(f"{cut} value(s) cut to {MAX_PARAM_LENGTH} characters")
        return params, notes

    def _tags(self, record: dict[str, Any], run_dir: Path) -> dict[str, str]:
        tags: dict[str, Any] = {
            "xstash.experiment": record.get("experiment"),
            "xstash.config": record.get("config"),
            "xstash.nodeid": record.get("nodeid"),
            "xstash.tool": record.get("tool"),
            "xstash.status": record.get("status"),
            "xstash.run_key": record.get("run_key"),
            "xstash.exit_code": record.get("exit_code"),
            "xstash.host": record.get("host"),
            "xstash.launcher": record.get("launcher"),
            "xstash.job_id": record.get("job_id"),
            "xstash.error": record.get("error"),
            "xstash.run_dir": str(run_dir),
        }
        if record.get("tags"):
            tags["xstash.tags"] = record.get("tags")
        git = record.get("git")
        if isinstance(git, dict):
            tags["xstash.git.commit"] = git.get("commit")
            tags["mlflow.source.git.commit"] = git.get("commit")
            tags["xstash.git.dirty"] = git.get("dirty")
        point = record.get("point")
        if isinstance(point, dict) and point:
            tags["xstash.point"] = _text(point)
            for axis, value in point.items():
                tags[f"point.{axis}"] = value
        return {
            key: _cut(mask(_text(value)), MAX_TAG_LENGTH)
            for key, value in _unique_keys(tags).items()
            if value is not None
        }

    def _artifacts(self, run_dir: Path) -> tuple[list[tuple[Path, str | None]], list[str]]:
        """The files to upload (with their artifact folder), and what is left out and why."""
        wanted: list[tuple[Path, str | None]] = [(run_dir / name, None) for name in ARTIFACTS]
        wanted.insert(2, (run_dir / DEFAULT_METRICS, None))
        wanted.append((run_dir / CONFIG_DIR / f"{CONFIG_NAME}.yaml", CONFIG_DIR))
        found: list[tuple[Path, str | None]] = []
        skipped: list[str] = []
        for path, folder in wanted:
            shown = f"{folder}/{path.name}" if folder else path.name
            try:
                info = path.lstat()
            except OSError:
                continue  # not there: nothing to say
            if path.is_symlink() or not path.is_file():
                skipped.append(f"{shown} (not a regular file)")
            elif info.st_size > MAX_ARTIFACT_BYTES:
                skipped.append(f"{shown} ({info.st_size / (1 << 20):.1f} MiB > 1 MiB)")
            else:
                found.append((path, folder))
        return found, skipped

    def _uploader(self, run_id: str, artifact_uri: str) -> Callable[[str, str | None], None]:
        """``upload(local_file, folder)`` for the run's artifacts.

        Clients before 3.7 resolve a server's proxied artifacts (``mlflow-artifacts:``)
        against the global tracking URI, not the client's: for them the artifact repository
        is made here, from this logger's URI (what later clients do themselves)."""
        if self._old_client and artifact_uri.startswith("mlflow-artifacts:"):
            proxied: Any = importlib.import_module("mlflow.store.artifact.mlflow_artifacts_repo")
            http: Any = importlib.import_module("mlflow.store.artifact.http_artifact_repo")
            resolved = proxied.MlflowArtifactsRepository.resolve_uri(artifact_uri, self.uri)
            repository = http.HttpArtifactRepository(resolved)

            def upload_old(local_file: str, folder: str | None) -> None:
                _guard(repository.log_artifact, local_file, folder)

            return upload_old

        def upload(local_file: str, folder: str | None) -> None:
            self._call("log_artifact", run_id, local_file, folder)

        return upload

    def _upload(
        self, upload: Callable[[str, str | None], None], path: Path, folder: str | None
    ) -> None:
        """One artifact, with secret values masked (a masked copy when there are any)."""
        data = path.read_bytes()[: MAX_ARTIFACT_BYTES + 1]
        text = data.decode("utf-8", "surrogateescape")
        masked = mask(text)
        if masked == text:
            upload(str(path), folder)
            return
        with tempfile.TemporaryDirectory(prefix="xstash-mlflow-") as tmp:
            copy = Path(tmp) / path.name
            copy.write_bytes(masked.encode("utf-8", "surrogateescape"))
            upload(str(copy), folder)

    def _batches(
        self, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str], ended: int
    ) -> Iterator[dict[str, list[Any]]]:
        """log_batch arguments within MLflow's limits: per kind, in all, and in bytes."""
        entities = self._entities
        batch: dict[str, list[Any]] = {"params": [], "metrics": [], "tags": []}
        size = 0
        items: list[tuple[str, str, Any]] = [("params", k, v) for k, v in params.items()]
        items += [("tags", k, v) for k, v in tags.items()]
        items += [("metrics", k, v) for k, v in metrics.items()]
        for kind, key, value in items:
            weight = len(json.dumps([key, value])) + 64
            limit = MAX_METRICS_PER_BATCH if kind == "metrics" else MAX_PARAMS_PER_BATCH
            total = sum(len(v) for v in batch.values())
            if total and (
                len(batch[kind]) >= limit
                or total >= MAX_ENTITIES_PER_BATCH
                or size + weight > MAX_BATCH_BYTES
            ):
                yield batch
                batch = {"params": [], "metrics": [], "tags": []}
                size = 0
            if kind == "params":
                batch[kind].append(entities.Param(key, value))
            elif kind == "tags":
                batch[kind].append(entities.RunTag(key, value))
            else:
                batch[kind].append(entities.Metric(key, value, ended, 0))
            size += weight
        if any(batch.values()):
            yield batch
