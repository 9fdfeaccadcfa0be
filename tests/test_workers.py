"""Worker pools stop with their parent: Ctrl-C and a killed parent leave no process behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ser.workers import spawn_pool

# a parent that starts 2 workers on hour-long tasks; each worker writes its pid first
PARENT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from ser.workers import spawn_pool

    def task(i):
        Path(sys.argv[1], f"{i}.pid").write_text(str(os.getpid()))
        time.sleep(3600)

    if __name__ == "__main__":
        with spawn_pool(2) as pool:
            list(pool.imap_unordered(task, range(2)))
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its exit status waits to be read


def _start(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group, as a shell job is
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "workers did not start within 60 s"
        time.sleep(0.1)
    time.sleep(0.2)  # let both write their pids whole
    return proc, [int(p.read_text()) for p in tmp_path.glob("*.pid")]


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    proc, workers = _start(tmp_path)
    assert all(map(_alive, workers))
    proc.kill()  # SIGKILL: the parent runs no cleanup at all
    proc.wait(10)
    try:
        assert _gone_within(workers, 15) == []
    finally:
        for pid in filter(_alive, workers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_ctrl_c_stops_the_workers_at_once_without_their_tracebacks(tmp_path):
    proc, workers = _start(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole job gets it
    try:
        proc.wait(20)  # the tasks sleep an hour: waiting for them would time out here
        err = proc.stderr.read().decode()
        assert proc.returncode != 0
        assert _gone_within(workers, 5) == []
        # the parent reports the interrupt once; the workers ignore SIGINT, so print nothing
        assert err.count("KeyboardInterrupt") == 1, err
    finally:
        for pid in filter(_alive, [proc.pid, *workers]):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_error_reaches_the_parent_and_the_pool_is_ended():
    with pytest.raises(ZeroDivisionError), spawn_pool(1) as pool:
        pool.starmap(divmod, [(1, 0)])
    with pytest.raises(ValueError, match="Pool not running"):  # terminated on the way out
        pool.starmap(divmod, [(1, 1)])


def test_spawn_pool_refuses_no_workers():
    with pytest.raises(ValueError, match="at least 1"), spawn_pool(0):
        pass
