"""The output folder (issue 17, items 1, 13 and 18): mcugen replaces or removes only the files
it wrote itself (its manifest says which, with their hashes); everything else in the folder
survives every build, --force or not; an interrupted build (Ctrl-C or SIGTERM at any moment,
even during the final moves) leaves the previous build or the new one and no debris.

The builds are person_detect for the host (no TensorFlow, no cross compiler): about a second.
The signal tests slow the final moves down with the MCUGEN_TEST_WRITE_DELAY hook
(mcugen/output.py) so that a signal can be sent while they run."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import PERSON_DETECT, REPO
from test_cli import assert_one_line_error

MANIFEST = ".mcugen-manifest.json"


@pytest.fixture
def build_here(mcugen_here):
    """build(cwd, out, *more): person_detect built for the host by the command line's code in
    this process (conftest.mcugen_here); the interrupted builds below are real processes."""
    def build(cwd: Path, out: str, *more: str) -> subprocess.CompletedProcess:
        return mcugen_here("build", "--model", str(PERSON_DETECT), "--target", "host", "--out",
                           out, *more, cwd=cwd)

    return build


def generated(name: str) -> set[str]:
    return {f"{name}.h", f"{name}.c", f"{name}_weights.c", f"{name}_weights.h", f"{name}_io.c",
            f"{name}.mk", f"{name}.tflite", "CMakeLists.txt", "report.md", "report.json",
            "report.html"}


def users_folder(folder: Path) -> dict[str, bytes]:
    """A folder as a user keeps it: their sources, a git repository, object files."""
    files = {"main.c": b"int main(void) { return 0; }\n", ".git/config": b"[core]\n",
             ".git/HEAD": b"ref: refs/heads/main\n", "main.o": os.urandom(64),
             "notes/todo.txt": b"flash it\n"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def assert_kept(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def assert_no_debris(parent: Path) -> None:
    """No staging folder anywhere: beside the output folder or inside it."""
    hidden = [p for p in parent.rglob(".*") if p.name not in (".git", MANIFEST)
              and ".git" not in p.parts]
    assert hidden == [], hidden


def manifest_of(folder: Path) -> dict[str, str]:
    return json.loads((folder / MANIFEST).read_text())["files"]


@pytest.mark.slow
def test_the_users_files_survive_forced_and_plain_builds(tmp_path, build_here):
    """Issue 17, items 1 and 13: --force into the user's folder, then a plain build, then
    another name: main.c, .git, object files all survive; mcugen's own files are replaced."""
    out = tmp_path / "fw"
    out.mkdir()
    mine = users_folder(out)
    assert_one_line_error(build_here(tmp_path, "fw", "--name", "pd"), "--force")
    forced = build_here(tmp_path, "fw", "--name", "pd", "--force")
    assert forced.returncode == 0, forced.stderr
    assert set(manifest_of(out)) == generated("pd")
    plain = build_here(tmp_path, "fw", "--name", "pd")  # the manifest makes it mcugen's folder...
    assert plain.returncode == 0, plain.stderr
    assert_kept(out, mine)  # ...but only for the files it names
    renamed = build_here(tmp_path, "fw", "--name", "other")
    assert renamed.returncode == 0, renamed.stderr
    assert_kept(out, mine)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == set(mine) | generated("other") | {MANIFEST}  # pd's files: removed
    assert_no_debris(tmp_path)


@pytest.mark.parametrize("force", [False, True])
def test_a_users_file_with_a_generated_name_is_never_overwritten(force, tmp_path, build_here):
    """Their own CMakeLists.txt: refused in one line naming it, even with --force, and nothing
    is written."""
    out = tmp_path / "fw"
    out.mkdir()
    (out / "CMakeLists.txt").write_text("project(mine)\n")
    result = build_here(tmp_path, "fw", "--name", "pd", *(["--force"] if force else []))
    assert_one_line_error(result, "CMakeLists.txt", "not a file mcugen wrote")
    assert sorted(p.name for p in out.iterdir()) == ["CMakeLists.txt"]
    assert (out / "CMakeLists.txt").read_text() == "project(mine)\n"
    # In a folder mcugen made, a file the user added under a generated name is theirs too.
    assert build_here(tmp_path, "ours", "--name", "pd").returncode == 0
    (tmp_path / "ours" / "pd.c").unlink()
    (tmp_path / "ours" / "pd.c").write_text("/* mine */\n")  # not the file mcugen wrote
    manifest = json.loads((tmp_path / "ours" / MANIFEST).read_text())
    del manifest["files"]["pd.c"]
    (tmp_path / "ours" / MANIFEST).write_text(json.dumps(manifest))
    assert_one_line_error(build_here(tmp_path, "ours", "--name", "pd", "--force"), "pd.c")
    assert (tmp_path / "ours" / "pd.c").read_text() == "/* mine */\n"


@pytest.mark.slow
def test_an_edited_generated_file_is_overwritten_only_when_forced(tmp_path, build_here):
    out = tmp_path / "fw"
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    original = (out / "pd_io.c").read_text()
    (out / "pd_io.c").write_text(original + "/* my tweak */\n")
    assert_one_line_error(build_here(tmp_path, "fw", "--name", "pd"), "pd_io.c", "edited",
                          "--force")
    assert (out / "pd_io.c").read_text().endswith("/* my tweak */\n")
    # A build under another name does not write pd_io.c: the edited file stays, the user's now,
    # while pd's unchanged files go.
    assert build_here(tmp_path, "fw", "--name", "other").returncode == 0
    assert (out / "pd_io.c").read_text().endswith("/* my tweak */\n")
    assert not (out / "pd.c").exists() and "pd_io.c" not in manifest_of(out)
    (out / "other.c").write_text("/* edited */\n")
    forced = build_here(tmp_path, "fw", "--name", "other", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "edited" not in (out / "other.c").read_text()


def test_a_damaged_manifest_or_an_old_mcugen_folder_is_refused_in_one_line(tmp_path, build_here):
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    (tmp_path / "fw" / MANIFEST).write_text('{"files": {"../../etc/passwd": "0"}}')
    assert_one_line_error(build_here(tmp_path, "fw", "--name", "pd", "--force"), MANIFEST)
    assert (tmp_path / "fw" / "pd.c").is_file()
    old = tmp_path / "old"  # what mcugen before the manifest left: a marker, no file list
    old.mkdir()
    (old / ".mcugen").write_text("This folder was generated by mcugen\n")
    (old / "main.c").write_text("mine")
    assert_one_line_error(build_here(tmp_path, "old", "--name", "pd", "--force"), "older mcugen")
    assert (old / "main.c").read_text() == "mine"


@pytest.mark.slow
def test_debris_of_interrupted_builds_is_removed_by_the_next(tmp_path, build_here):
    """Staging folders of a killed build (inside the folder; its process is gone) and those of
    mcugen before 0.2 (beside the folder, with its marker) go; other hidden folders stay."""
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    debris = [tmp_path / "fw" / f".mcugen-staging-{dead}-abc123",
              tmp_path / ".fw.old.k2j4h5g6" / "previous", tmp_path / ".fw.x1y2z3w4"]
    for folder in debris:
        folder.mkdir(parents=True)
        (folder / "pd.c").write_text("half")
    (tmp_path / ".fw.old.k2j4h5g6" / "previous" / ".mcugen").write_text("marker")
    (tmp_path / ".fw.x1y2z3w4" / ".mcugen").write_text("marker")
    theirs = tmp_path / ".fw.keepthis"
    theirs.mkdir()
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    assert not any(folder.exists() for folder in debris)
    assert not (tmp_path / ".fw.old.k2j4h5g6").exists() and theirs.is_dir()


# ---------------------------------------------------------------------------------------------
# Signals, sent to a real `mcugen build` at several moments


# Starts a command with SIGINT and SIGTERM as a shell starts it: delivered, default. A process
# inherits its signal mask, and a pytest worker's thread may hold SIGINT blocked (some of the
# suite's libraries block it around their own children): mcugen then never saw the signal,
# finished its build and exited 0 (seven of these tests, in two full runs of the suite).
AS_A_SHELL_STARTS_IT = (
    "import os, signal, sys\n"
    "for number in (signal.SIGINT, signal.SIGTERM):\n"
    "    signal.signal(number, signal.SIG_DFL)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n")


class Build:
    """`mcugen build` as a process whose stderr is read as it comes."""

    def __init__(self, cwd: Path, *arguments: str, delay: float = 0.0,
                 python_flags: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "MCUGEN_TEST_WRITE_DELAY": str(delay)}
        env.pop("MCUGEN_DEBUG", None)
        command = [sys.executable, *python_flags, "-m", "mcugen", "build", "--model",
                   str(PERSON_DETECT), "--target", "host", *arguments]
        self.process = subprocess.Popen(
            [sys.executable, "-c", AS_A_SHELL_STARTS_IT, *command], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := self.process.stderr.read1(4096):
            self.stderr += chunk

    def wait_for(self, condition, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, self.stderr.decode()
            assert time.monotonic() < deadline, self.stderr.decode()
            time.sleep(0.01)

    def finish(self) -> tuple[int, str]:
        self.process.wait(timeout=120)
        self.reader.join(timeout=10)
        return self.process.returncode, self.stderr.decode()


def assert_interrupted(returncode: int, stderr: str, number: int) -> None:
    """One line (after any step lines), no traceback, the shell's exit status: 128 + the
    signal's number, or (what a shell reports the same way) the signal itself, with which
    Python ends a process that a KeyboardInterrupt crossed some of its C code."""
    assert returncode in (128 + number, -number), stderr
    assert "Traceback" not in stderr, stderr
    word = "terminated" if number == signal.SIGTERM else "interrupted"
    lines = stderr.strip().splitlines()
    assert lines[-1] == f"mcugen: {word}", stderr
    assert all(line.startswith("mcugen: ") for line in lines), stderr


@pytest.mark.parametrize("seconds", [0.0, 0.05, 0.15, 0.3, 0.45])
def test_ctrl_c_while_mcugen_starts_prints_one_line(seconds, tmp_path):
    """Issue 17, item 18: a Ctrl-C in the first half second (NumPy, Jinja, mcugen's modules
    still loading) printed a traceback. The moments count from the end of the interpreter's own
    start-up (Python's, not mcugen's: a KeyboardInterrupt while its site module runs the
    site-packages' .pth files is a fatal error of Python's own), which -X importtime shows: its
    line for mcugen.cli, the first module of mcugen's command line."""
    running = Build(tmp_path, "--out", "fw", python_flags=("-X", "importtime"))
    running.wait_for(lambda: b"| mcugen.cli\n" in running.stderr)
    time.sleep(seconds)
    running.process.send_signal(signal.SIGINT)
    returncode, stderr = running.finish()
    stderr = "".join(line for line in stderr.splitlines(keepends=True)
                     if not line.startswith("import time:"))
    assert_interrupted(returncode, stderr, signal.SIGINT)
    assert not (tmp_path / "fw").exists()
    assert_no_debris(tmp_path)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_slow_steps_leaves_the_previous_build(number, tmp_path, build_here):
    out = tmp_path / "fw"
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    mine = users_folder(out)
    before = {name: (out / name).read_bytes() for name in generated("pd")}
    running = Build(tmp_path, "--out", "fw", "--name", "other")
    running.wait_for(lambda: b"compiling" in running.stderr)
    running.process.send_signal(number)
    assert_interrupted(*running.finish(), number)
    assert {name: (out / name).read_bytes() for name in generated("pd")} == before
    assert not (out / "other.c").exists()
    assert_kept(out, mine)
    assert_no_debris(tmp_path)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_final_moves_waits_for_them(number, tmp_path, build_here):
    """The signal arrives while the new files are being moved in (slowed down to 0.2 s per
    file): the moves finish first, then mcugen stops with the signal's status. The folder is the
    new build, whole: every file of it, none of the old one's, the user's untouched."""
    out = tmp_path / "fw"
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    mine = users_folder(out)
    running = Build(tmp_path, "--out", "fw", "--name", "other", delay=0.2)
    running.wait_for(lambda: (out / "other.c").exists())  # moved in: others still to come
    running.process.send_signal(number)
    assert_interrupted(*running.finish(), number)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == set(mine) | generated("other") | {MANIFEST}
    assert set(manifest_of(out)) == generated("other")
    assert_kept(out, mine)
    assert_no_debris(tmp_path)


def test_a_kill_during_the_final_moves_is_repaired_by_the_next_build(tmp_path, build_here):
    """SIGKILL cannot be held back: it leaves a mix of the two builds and the staging folder.
    The manifest written before the moves names both, so the next build recognises every file
    as mcugen's, removes the staging folder, and the user's files are untouched throughout."""
    out = tmp_path / "fw"
    assert build_here(tmp_path, "fw", "--name", "pd").returncode == 0
    mine = users_folder(out)
    running = Build(tmp_path, "--out", "fw", "--name", "other", delay=0.2)
    running.wait_for(lambda: (out / "other.c").exists())
    running.process.kill()
    running.finish()
    assert (out / "pd.c").exists() and list(out.glob(".mcugen-staging-*"))  # the mix
    assert_kept(out, mine)
    again = build_here(tmp_path, "fw", "--name", "other")
    assert again.returncode == 0, again.stderr
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == set(mine) | generated("other") | {MANIFEST}
    assert_no_debris(tmp_path)


@pytest.mark.parametrize("out", ["x" * 300 + "/m", "a file/m"], ids=["long name", "file"])
def test_an_output_path_that_cannot_be_a_folder_is_one_line_before_any_work(out, tmp_path,
                                                                            build_here):
    """Issue 17, item 18: a 300-character --out component was an internal error."""
    (tmp_path / "a file").write_text("mine")
    result = build_here(tmp_path, out)
    assert_one_line_error(result, "output" if "x" * 300 in out else "a file")
    assert "compiling" not in result.stderr  # refused before the slow steps
    assert (tmp_path / "a file").read_text() == "mine"


def test_an_error_an_interruption_caused_is_answered_as_the_interruption(monkeypatch, capsys):
    """A Ctrl-C while NumPy loads its C extension surfaces as NumPy's ImportError, not as
    KeyboardInterrupt (seen in test_ctrl_c_while_mcugen_starts_prints_one_line under load:
    "internal error: ImportError", exit 2): with the signal pending, mcugen says it was
    interrupted, exit 130."""
    from mcugen import cli

    interruptions = cli.Interruptions()
    interruptions.pending = signal.SIGINT

    def run(args):
        raise ImportError("PyCapsule_Import could not import module \"datetime\"")

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(run=run)

    monkeypatch.setattr(cli, "make_parser", Parser)
    assert cli._main([], interruptions) == 130
    assert capsys.readouterr().err == "mcugen: interrupted\n"
