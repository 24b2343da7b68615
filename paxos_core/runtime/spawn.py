"""Starting a Python child process that imports exactly the paxos_core its parent imported.

`python -m MODULE` puts the child's current directory first on sys.path. Run from a source tree of
paxos-core (a checkout, after `pip install .`), such a child imports that tree's uncompiled modules instead of
the installed package its parent runs, and dies with "No module named 'paxos_core.wire.checksum'". So
every child (workers, bench nodes and clients) is started as

    python -c BOOT MODULE ARGS...        with PAXOS_CORE_PACKAGE=<directory of the parent's paxos_core>

BOOT imports paxos_core from that directory (its parent first on sys.path), then `boot()` takes that entry
and the current directory off sys.path, checks that paxos_core is the parent's (else one line on stderr
and exit status 2) and runs MODULE as __main__. The working directory is left as it is, so relative paths
in the arguments keep their meaning.
"""
import os
import runpy
import sys

import paxos_core

PACKAGE_ENV = "PAXOS_CORE_PACKAGE"
PACKAGE_DIR = os.path.dirname(os.path.abspath(paxos_core.__file__))
MISMATCH_EXIT = 2

BOOT = ("import os, sys; sys.path.insert(0, os.path.dirname(os.environ['PAXOS_CORE_PACKAGE'])); "
        "from paxos_core.runtime.spawn import boot; boot()")


def python_command(module, *args):
    """argv that runs `python -m module args...` in a child that imports this paxos_core (see environment)."""
    return [sys.executable, "-c", BOOT, module, *[str(a) for a in args]]


def environment(extra=None):
    """The child's environment: this process's, with `extra`, and PAXOS_CORE_PACKAGE set to this package."""
    env = dict(os.environ)
    env.update(extra or {})
    env[PACKAGE_ENV] = PACKAGE_DIR
    return env


def boot():
    """The child's side of BOOT: check which paxos_core was imported, then run the module in sys.argv[1]."""
    expected = os.environ[PACKAGE_ENV]
    if sys.path and sys.path[0] == os.path.dirname(expected):
        del sys.path[0]              # BOOT's entry: paxos_core is imported, its submodules follow its __path__
    if "" in sys.path:
        sys.path.remove("")          # -c's current directory: a source tree there must not shadow anything
    if PACKAGE_DIR != expected:
        sys.stderr.write("paxos-core: this child process imported paxos_core from %s, but its parent runs the "
                         "one in %s (%s)\n" % (PACKAGE_DIR, expected, PACKAGE_ENV))
        sys.exit(MISMATCH_EXIT)
    module = sys.argv.pop(1)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
