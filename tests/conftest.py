"""Suite-wide hooks: the 2,000-seed simulator sweep runs in the background while the other tests run.

The sweep (tests/test_simulator.py, issue 9's CI sweep) is the longest test: about 8 minutes of both cores of
the CI machine. Most other tests wait on real processes and timers and leave the cores idle. So the sweep
starts as soon as collection ends, in a session of its own at the lowest CPU priority (autogroup nice 19 where
the kernel groups processes by session, as Debian's does; plain nice 19 as well), where it takes only what
the other tests leave; its test is moved to the end of the run and waits for the result. The sweep is the
same command with the same seeds either way: only when it runs changes. It is stopped by its process group
when the session ends, finished or not.
"""
import ctypes
import os
import signal
import subprocess
import sys
import tempfile

import pytest

SWEEP_TEST = "test_2000_seeds_over_3_and_5_nodes_1_8_and_64_groups_every_fault_kind_zero_violations"
SWEEP_ARGS = ("--seeds", "2000", "--nodes", "3,5", "--groups", "1,8,64", "--faults", "all")
SWEEP_TIMEOUT = 1800            # seconds the sweep's test waits once its turn comes

_sweep = {}


def _lowest_priority():
    """In the child, before exec: nice 19, and killed if pytest dies (PR_SET_PDEATHSIG)."""
    os.nice(19)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)      # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def pytest_collection_modifyitems(session, config, items):
    sweep = [item for item in items if item.name == SWEEP_TEST]
    if sweep:
        items[:] = [item for item in items if item.name != SWEEP_TEST] + sweep


def pytest_collection_finish(session):
    if session.config.option.collectonly or not any(item.name == SWEEP_TEST for item in session.items):
        return
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "paxos_core", "sim", *SWEEP_ARGS], stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_lowest_priority)
    try:
        with open("/proc/%d/autogroup" % proc.pid, "w") as f:        # its session's group, at nice 19
            f.write("19")
    except OSError:
        pass                                                        # no autogroups here: plain nice applies
    _sweep["run"] = (proc, out, err)


def pytest_sessionfinish(session, exitstatus):
    run = _sweep.pop("run", None)
    if run is None:
        return
    proc, out, err = run
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out.close()
    err.close()


@pytest.fixture
def background_sweep():
    """(exit code, stdout lines, stderr) of the sweep started when collection ended (module docstring)."""
    proc, out, err = _sweep["run"]
    try:
        proc.wait(timeout=SWEEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the simulator sweep did not end within %d s of its turn" % SWEEP_TIMEOUT)
    out.seek(0)
    err.seek(0)
    return proc.returncode, out.read().decode().strip().splitlines(), err.read().decode()
