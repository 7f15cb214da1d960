"""The training subprocess dies with `elm train`, even by kill -9, and a second trainer refuses a work folder
that one is using, naming it. Real processes throughout; the launcher is played by a small Python script
that starts one worker the way `accelerate launch` does (a plain Popen)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from elm.train.config import TrainingError
from elm.train.process import LOCK_FILE, work_lock
from elm.train.stage import run_logged

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")

WORKER = textwrap.dedent("""
    import os, sys, time
    from elm.train.process import die_with_parent_if_asked
    die_with_parent_if_asked()
    open(sys.argv[1], "w").write(str(os.getpid()))
    time.sleep(300)
""")
LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[3]])
    open(sys.argv[2], "w").write(str(os.getpid()))
    time.sleep(300)
""")
ELM_TRAIN = textwrap.dedent("""
    import sys
    from elm.train.stage import run_logged
    run_logged([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]])
""")


def alive(pid: int) -> bool:
    """Running and not a zombie (a container's PID 1 may never reap the orphans it inherits)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(paths: list[Path], timeout: float = 120) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(p.exists() and p.read_text() for p in paths):
            return [int(p.read_text()) for p in paths]
        time.sleep(0.2)
    raise AssertionError(f"{paths} not written within {timeout} s")


def test_kill_9_of_elm_train_takes_the_launcher_and_its_worker_with_it(tmp_path):
    launcher_pid, worker_pid = tmp_path / "launcher.pid", tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", ELM_TRAIN, LAUNCHER, WORKER, str(launcher_pid), str(worker_pid)])
    pids = wait_for([launcher_pid, worker_pid])
    try:
        assert all(alive(p) for p in pids)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        end = time.monotonic() + 15
        while any(alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids), "training processes outlived elm train"
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_second_trainer_is_refused_and_told_who_holds_the_folder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from elm.train.process import work_lock
        with work_lock(Path({str(tmp_path)!r})):
            open({str(tmp_path / 'ready')!r}, "w").write("1")
            time.sleep(300)
    """)])
    try:
        wait_for([tmp_path / "ready"])
        with pytest.raises(TrainingError, match=rf"another trainer is working in {tmp_path} \(pid {holder.pid} "
                                                r"\(elm train\)\)"):
            with work_lock(tmp_path):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with work_lock(tmp_path):  # a dead holder holds nothing
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_launched_process_holds_the_lock_too(tmp_path, caplog):
    """The lock is inherited: had elm train died and its launcher lived on, the folder would still be taken."""
    probe = textwrap.dedent(f"""
        from pathlib import Path
        from elm.train.config import TrainingError
        from elm.train.process import work_lock
        try:
            with work_lock(Path({str(tmp_path)!r})):
                print("GOT THE LOCK")
        except TrainingError as e:
            print("REFUSED:", e)
    """)
    with caplog.at_level("INFO", logger="elm"), work_lock(tmp_path) as fd:
        run_logged([sys.executable, "-c", probe], lock_fd=fd)
    assert f"REFUSED: another trainer is working in {tmp_path} (pid {os.getpid()} (elm train)" in caplog.text
    assert "GOT THE LOCK" not in [r.getMessage() for r in caplog.records]


def test_the_training_error_is_the_last_line_below_the_launchers_traceback(tmp_path):
    """The real launcher (accelerate launch) and script: the script's error and its fix come last, not buried
    above accelerate's CalledProcessError traceback."""
    from elm.train.config import accelerate_config_path

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_path("cpu")),
           "-m", "elm.train.script", "--work-dir", str(tmp_path / "run"), "--synthesize", str(tmp_path / "nothing"),
           "--artifacts", str(tmp_path / "artifacts")]
    with pytest.raises(TrainingError) as err:
        run_logged(cmd)
    lines = str(err.value).splitlines()
    assert any("CalledProcessError" in line for line in lines)  # accelerate's traceback is still there, above
    assert lines[-1].startswith("ArtifactError: no single 'synthesize' artifact") and str(tmp_path) in lines[-1]
