"""An unwritable or full output root: a clear error per run, no traceback, other runs go on."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PLAIN_TOOL_HEAD, Project

# Plain Python: prints N KiB to stdout (N from its config), so a tiny disk fills up.
WRITER = (
    PLAIN_TOOL_HEAD
    + """\
kib = int(re.search(r"kib: ([0-9]+)", config).group(1))
for _ in range(kib):
    sys.stdout.write("x" * 1023 + "\\n")
print("written")
"""
)


@pytest.fixture
def writer(project: Project) -> Project:
    project.tool("writer", WRITER, entrypoint="main.py", env="system", deps=None)
    return project


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root can mount one; CI runs as root)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs under CI: {proc.stderr}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_output_root_that_cannot_exist(writer: Project) -> None:
    (writer.root / "blocker").write_text("a file, not a folder\n")
    writer.config("a.yaml", "tool: writer\nexperiment: a\nkib: 1\n")
    writer.config("b.yaml", "tool: writer\nexperiment: b\nkib: 1\n")
    result = writer.pytester.runpytest("configs", "--xstash-output-root", "blocker/out")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*cannot create the run directory under */blocker/out: *Not a directory*",
            "*fix: make the output root writable, free disk space, or choose another one*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_full_disk_fails_runs_clearly_and_the_session_goes_on(
    writer: Project, tiny_disk: Path
) -> None:
    writer.config("big.yaml", "tool: writer\nexperiment: big\nkib: 2048\n")
    writer.config("small.yaml", "tool: writer\nexperiment: small\nkib: 1\n")
    result = writer.pytester.runpytest("configs", "--xstash-output-root", str(tiny_disk), "-v")
    text = result.stdout.str()
    assert "Traceback (most recent call last)" not in text.split("Captured")[0]
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    assert sum(outcomes.get(k, 0) for k in ("passed", "failed")) == 2  # both ran to a verdict
    assert "No space left on device" in text
    # Space freed: the next session works again on the same root.
    for path in sorted(tiny_disk.rglob("stdout.log")):
        path.unlink()
    again = writer.pytester.runpytest("configs/small.yaml", "--xstash-output-root", str(tiny_disk))
    again.assert_outcomes(passed=1)


@pytest.mark.parametrize("compose", ["on", "off"])
def test_state_folder_that_cannot_be_written(project: Project, compose: str) -> None:
    """outputs/ is fine, but something is in the way of xstash's own state (its environment
    stamps and lock): each experiment says so, with the path and the fix; no run is left
    'running' or called 'interrupted'."""
    project.tool("hy")  # env: uv, so its environment is prepared (and stamped) by xstash
    project.config("a.yaml", "tool: hy\nexperiment: a\n")
    project.config("b.yaml", "tool: hy\nexperiment: b\n")
    state = project.root / "outputs" / ".xstash"
    state.mkdir(parents=True)
    (state / "envs").write_text("a file where xstash keeps a folder\n")
    result = project.pytester.runpytest(
        "configs", f"--xstash-compose={compose}", "--continue-on-collection-errors"
    )
    text = result.stdout.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    message = f"xstash cannot write its environment state in {state / 'envs'}: *File exists*"
    if compose == "on":
        result.assert_outcomes(errors=2)
        result.stdout.fnmatch_lines(
            [f"*a.yaml:2: tool 'hy' cannot compose this experiment: {message}"]
        )
    else:
        result.assert_outcomes(failed=2)
        result.stdout.fnmatch_lines([f"*tool 'hy': {message}"])
        for config in ("a", "b"):
            (run_dir,) = project.run_dirs(config)
            record = json.loads((run_dir / "xstash.json").read_text())
            assert record["status"] == "error"
            assert "cannot write its environment state" in record["error"]
    result.stdout.fnmatch_lines(["*fix: make */.xstash/envs a writable folder*"])


def test_links_planted_in_the_output_root_are_not_followed(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A run folder that is a link to elsewhere, and links in place of xstash's own state
    files: runs fail with the link named; nothing is written where the links point."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    victim_file = elsewhere / "precious.txt"
    victim_file.write_text("do not touch\n")
    project.tool("hy")  # env: uv: prepared and logged in outputs/.xstash/envs
    project.config("moved.yaml", "tool: hy\nexperiment: moved\n")
    project.config("fine.yaml", "tool: hy\nexperiment: fine\n")
    outputs = project.root / "outputs"
    (outputs / "configs").mkdir(parents=True)
    (outputs / "configs" / "moved").symlink_to(elsewhere, target_is_directory=True)
    result = project.pytester.runpytest("configs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*/outputs/configs/moved leads outside the output root*"])
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]
    # Now xstash's own log of environment preparations is a planted link.
    sync_log = outputs / ".xstash" / "envs" / "sync.log"
    sync_log.unlink()
    sync_log.symlink_to(victim_file)
    (outputs / "configs" / "moved").unlink()
    again = project.pytester.runpytest("configs/fine.yaml", "-p", "no:cacheprovider")
    again.assert_outcomes(errors=1)
    again.stdout.fnmatch_lines(["*cannot write its environment state*symbolic links*"])
    assert victim_file.read_text() == "do not touch\n"
    assert "Traceback" not in result.stdout.str() + again.stdout.str()


def test_xstash_never_writes_its_own_files_through_a_link(tmp_path: Path) -> None:
    """Every file xstash writes under its output root (records, logs, verdicts, durations,
    progress, the watchdog's list) goes through these: a link planted in its place is an
    error, and its target is untouched."""
    from xstash_plugin.fsutil import open_own_file, write_own_file

    target = tmp_path / "precious"
    target.write_text("keep")
    link = tmp_path / "planted"
    link.symlink_to(target)
    with pytest.raises(OSError):
        write_own_file(link, "overwritten")
    with pytest.raises(OSError):
        write_own_file(link, "appended", append=True)
    with pytest.raises(OSError):
        open_own_file(link, append=True, binary=True)
    assert target.read_text() == "keep"
    own = tmp_path / "own.log"
    write_own_file(own, "a")
    write_own_file(own, "b\n", append=True)
    with open_own_file(own, append=True, binary=True) as handle:
        handle.write(b"c")
    assert own.read_text() == "ab\nc"
