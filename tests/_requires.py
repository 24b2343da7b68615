"""What a test needs from outside pip: skip with the command that installs it, or fail in CI.

A test that needs a system tool or root calls `require_tool` / `require_root` (in a fixture or at its
start). Without it, the test is skipped with a reason that names the package to install. With
PAXOS_CORE_REQUIRE_ALL=1 in the environment (.ci/run sets it, after installing every such package) the
same check fails the test instead, so CI never passes by skipping.
"""
import os
import shutil
import sysconfig

import pytest

REQUIRE_ALL = "PAXOS_CORE_REQUIRE_ALL"


def missing(reason):
    """Skip the running test for `reason`, or fail it if REQUIRE_ALL is set."""
    if os.environ.get(REQUIRE_ALL, "") not in ("", "0"):
        pytest.fail("%s (%s is set: nothing may be skipped)" % (reason, REQUIRE_ALL), pytrace=False)
    pytest.skip(reason)


def require_tool(name, apt):
    """The executable `name` must be on PATH; `apt` is the Debian package that provides it."""
    if shutil.which(name) is None:
        missing("%s is not installed: apt-get install %s" % (name, apt))


def require_root(what):
    """The test does `what` (e.g. "mount a loop device"), which only root may do."""
    if os.geteuid() != 0:
        missing("%s needs root: run the tests as root (CI does)" % what)


def require_c_compiler():
    """The compiler Python builds extensions with (sysconfig's CC, e.g. gcc)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    require_tool(cc, apt="build-essential")
