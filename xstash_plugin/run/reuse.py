"""``--xstash-reuse``: an experiment whose run key matches a passed run is not run again.

The passed run's metrics are checked against the config's current expectations (which may have
changed), so a reused run passes or fails honestly. Failed, timed-out, interrupted or crashed
runs are never reused, which makes resuming an interrupted suite a matter of running it again
with ``--xstash-reuse``.
"""

from __future__ import annotations

from pathlib import Path

from xstash_plugin.run.record import RECORD_NAME, RunRecord, Status

_Newest = dict[str, tuple[float, Path]]  # name -> (when the newest ended, its run directory)


class ReuseIndex:
    """Passed runs by run key, per config folder, read once per pytest process; and the newest
    passed run of each node id there (what a rerun is explained against, see rerun.py)."""

    def __init__(self, output_root: Path) -> None:
        self.output_root = output_root
        self._folders: dict[Path, tuple[_Newest, _Newest]] = {}  # (by run key, by node id)
        self.problems: list[str] = []  # unreadable records, reported once each

    def find(self, config_relpath: Path, run_key: str) -> Path | None:
        found = self._folder(config_relpath)[0].get(run_key)
        return found[1] if found else None

    def latest(self, config_relpath: Path, nodeid: str) -> Path | None:
        """The newest passed run of the experiment (or sweep point) ``nodeid``, if any."""
        found = self._folder(config_relpath)[1].get(nodeid)
        return found[1] if found else None

    def _folder(self, config_relpath: Path) -> tuple[_Newest, _Newest]:
        folder = self.output_root / config_relpath.with_suffix("")
        if folder not in self._folders:
            self._folders[folder] = self._scan(folder)
        return self._folders[folder]

    def _scan(self, folder: Path) -> tuple[_Newest, _Newest]:
        index: _Newest = {}
        nodes: _Newest = {}
        try:
            run_dirs = sorted(p for p in folder.iterdir() if (p / RECORD_NAME).is_file())
        except OSError:
            return index, nodes
        for run_dir in run_dirs:
            try:
                record = RunRecord.load(run_dir)
            except (OSError, ValueError) as exc:
                self.problems.append(
                    f"ignoring the unreadable run record {run_dir / RECORD_NAME} ({exc}); "
                    "delete that run directory if it is broken"
                )
                continue
            key, ended = record.run_key, record.ended
            if record.status is not Status.PASSED or not isinstance(key, str):
                continue
            stamp = float(ended) if isinstance(ended, (int, float)) else 0.0
            for found, name in ((index, key), (nodes, record.nodeid)):
                if name not in found or stamp > found[name][0]:
                    found[name] = (stamp, run_dir)
        return index, nodes


class SubmittedIndex:
    """Runs a detached session left 'submitted' (a SLURM job, no result yet), by run key."""

    def __init__(self, output_root: Path) -> None:
        self.output_root = output_root
        self._folders: dict[Path, dict[str, tuple[Path, RunRecord]]] = {}

    def find(self, config_relpath: Path, run_key: str) -> tuple[Path, RunRecord] | None:
        folder = self.output_root / config_relpath.with_suffix("")
        if folder not in self._folders:
            found: dict[str, tuple[Path, RunRecord]] = {}
            try:
                run_dirs = sorted(p for p in folder.iterdir() if (p / RECORD_NAME).is_file())
            except OSError:
                run_dirs = []
            for run_dir in run_dirs:
                try:
                    record = RunRecord.load(run_dir)
                except (OSError, ValueError):
                    continue
                key = record.run_key
                if record.status is Status.SUBMITTED and isinstance(key, str):
                    found[key] = (run_dir, record)
            self._folders[folder] = found
        # Taken once: two items never attach to the same job.
        return self._folders[folder].pop(run_key, None)
