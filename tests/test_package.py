"""The installed package: compiled modules really loaded, the CLI entry points work."""
import subprocess
import sys

from paxos_core import native


def test_every_native_module_is_the_compiled_extension():
    statuses = native.all_status()
    assert len(statuses) == len(native.NATIVE_MODULES) >= 9
    for name, compiled, path in statuses:
        assert compiled, "%s was imported from %s, not a compiled extension" % (name, path)
    native.require_compiled()


def test_info_command_lists_every_module_as_compiled():
    for argv in (["paxos-core", "info"], [sys.executable, "-m", "paxos_core", "info"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        assert "paxos-core 0." in out
        for name in native.NATIVE_MODULES:
            assert name in out
        assert "NOT COMPILED" not in out
