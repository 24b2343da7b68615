"""Packaging and the test set-up: metadata that agrees with the README, an sdist that builds a wheel with
every compiled module, an installed package whose child processes import it (not a source tree in their
current directory), and tests needing system tools that skip with what to install, or fail in CI.

The sdist and the wheel are built once for this module (no build isolation: the build tools come with the
[test] extra), compiled with PAXOS_CORE_OPT="-O0 -g0" to stay quick; the wheel goes into a venv that sees
the dependencies of this interpreter's site-packages, so nothing is downloaded.
"""
import importlib.machinery
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from _requires import REQUIRE_ALL, require_c_compiler
from cluster_harness import alive, descendants, free_base_port, wait_for
from paxos_core import native
from paxos_core.runtime import spawn

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What a source copy leaves out: build products and caches (an in-place build puts *.so and *.c beside the .pyx).
BUILD_PRODUCTS = ("build", "dist", ".git", ".hypothesis", ".pytest_cache", "__pycache__")


def compiled_modules():
    """The modules setup.py compiles: one per .pyx file under paxos_core/."""
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "paxos_core").rglob("*.pyx"))


def copy_source(dest):
    """The source tree as a fresh checkout has it: no compiled modules, no generated C, no build dirs."""
    def ignore(directory, names):
        generated = Path(directory).name != "csrc"
        return [n for n in names if n in BUILD_PRODUCTS or n.endswith((".egg-info", ".so", ".pyc"))
                or (generated and n.endswith((".c", ".html")))]
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def run(argv, timeout=600, **kwargs):
    if str(argv[0]) != sys.executable:
        # Another interpreter (a test venv's) imports the package it installed, never a checkout on PYTHONPATH.
        kwargs.setdefault("env", {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)


def _version(text):
    return tuple(int(x) for x in text.split("."))


# ---------------------------------------------------------------------------------------------- metadata


def test_python_versions_agree_in_metadata_readme_and_classifiers():
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.11"            # tomllib is in the standard library from 3.11
    minimum = project["requires-python"][2:]
    classified = sorted((m.group(1) for c in project["classifiers"]
                         for m in [re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c)] if m), key=_version)
    assert classified and classified[0] == minimum, classified
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    stated = re.findall(r"Python (\d\.\d+)\+ \(tested on ([\d., and]+)\)", quick_start)
    assert len(stated) == 1, "README's Quick start must say 'Python X.Y+ (tested on ...)'"
    assert stated[0][0] == minimum
    assert re.findall(r"\d\.\d+", stated[0][1]) == classified
    assert not re.search(r"Python\s*(>=\s*)?3\.10", (ROOT / "README.md").read_text())
    assert sys.version_info >= _version(minimum)


def test_license_file_is_the_license_pyproject_names():
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_compiled_modules_are_the_ones_native_lists():
    assert compiled_modules() == sorted(native.NATIVE_MODULES)


# ---------------------------------------------------------------------------------------------- _requires


def _pytest(args, cwd, env_extra):
    env = dict(os.environ, COLUMNS="250")
    env.pop(REQUIRE_ALL, None)
    env.update(env_extra)
    return run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
               timeout=300)


def test_powercut_tests_skip_without_xfsprogs_and_fail_when_everything_is_required(tmp_path):
    empty = tmp_path / "empty-bin"                 # a PATH where no tool is found
    empty.mkdir()
    tests = len(re.findall(r"^def test_", (ROOT / "tests" / "test_powercut.py").read_text(), re.M))
    skipped = _pytest(["tests/test_powercut.py"], ROOT, {"PATH": str(empty)})
    assert skipped.returncode == 0, skipped.stdout[-3000:]
    assert "%d skipped" % tests in skipped.stdout
    assert "mkfs.xfs is not installed: apt-get install xfsprogs" in skipped.stdout
    failed = _pytest(["tests/test_powercut.py"], ROOT, {"PATH": str(empty), REQUIRE_ALL: "1"})
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert "%d errors" % tests in failed.stdout           # the fixture fails: the tests error at set-up
    assert "mkfs.xfs is not installed: apt-get install xfsprogs (%s is set" % REQUIRE_ALL in failed.stdout


def test_require_root_and_compiler_skip_or_fail_the_same_way(tmp_path):
    (tmp_path / "test_needs.py").write_text(
        "import os, sys\n"
        "sys.path.insert(0, %r)\n"
        "import _requires\n\n"
        "def test_root(monkeypatch):\n"
        "    monkeypatch.setattr(os, 'geteuid', lambda: 1000)\n"
        "    _requires.require_root('mounting a loop device')\n\n"
        "def test_compiler(monkeypatch):\n"
        "    monkeypatch.setattr(_requires.sysconfig, 'get_config_var', lambda name: 'no-such-cc -pthread')\n"
        "    _requires.require_c_compiler()\n" % str(ROOT / "tests"))
    skipped = _pytest(["test_needs.py"], tmp_path, {})
    assert skipped.returncode == 0 and "2 skipped" in skipped.stdout, skipped.stdout[-3000:]
    assert "mounting a loop device needs root" in skipped.stdout
    assert "no-such-cc is not installed: apt-get install build-essential" in skipped.stdout
    failed = _pytest(["test_needs.py"], tmp_path, {REQUIRE_ALL: "1"})
    assert failed.returncode == 1 and "2 failed" in failed.stdout, failed.stdout[-3000:]


# ---------------------------------------------------------------------------------------------- sdist, wheel


def test_setup_refuses_a_tree_without_pyx_files(tmp_path):
    """A tree that lost its .pyx files (as the sdist once did) must not build a wheel without compiled code."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "paxos_core").mkdir()
    (tmp_path / "paxos_core" / "__init__.py").write_text("")
    result = run([sys.executable, "setup.py", "--name"], cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no .pyx file under" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel, venv python): the sdist of a copy of this tree, the wheel built from that sdist, and a
    venv (seeing this interpreter's site-packages for the dependencies) with the wheel installed."""
    require_c_compiler()
    tmp = tmp_path_factory.mktemp("packaging")
    source = copy_source(tmp / "source")
    env = dict(os.environ, PAXOS_CORE_OPT="-O0 -g0")
    sdist = run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", tmp / "dist", source],
                env=env)
    assert sdist.returncode == 0, sdist.stdout[-2000:] + sdist.stderr[-3000:]
    (sdist_path,) = (tmp / "dist").glob("*.tar.gz")
    wheel = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                 "--wheel-dir", tmp / "wheels", sdist_path], env=env, cwd=tmp)
    assert wheel.returncode == 0, wheel.stdout[-2000:] + wheel.stderr[-3000:]
    (wheel_path,) = (tmp / "wheels").glob("*.whl")
    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # The dependencies (and pip) from this interpreter's site-packages, after the venv's own: listed in a .pth
    # rather than --system-site-packages, which would give the base interpreter's when this one is a venv.
    venv_site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    parent = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    Path(venv_site, "parent_site_packages.pth").write_text("\n".join(parent) + "\n")
    installed = run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel_path], cwd=tmp)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
    return sdist_path, wheel_path, python


def test_sdist_ships_the_sources_and_no_build_products(built):
    sdist, _, _ = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {str(p.relative_to(ROOT)) for pattern in ("paxos_core/**/*.pyx", "paxos_core/**/*.pxd", "pxd/*.pxd",
                                                        "csrc/*") for p in ROOT.glob(pattern)}
    expected |= {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in"}
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.endswith(".so") or (n.startswith("paxos_core/") and n.endswith(".c"))]


def test_wheel_built_from_the_sdist_has_every_compiled_module(built, tmp_path):
    _, wheel, python = built
    modules = compiled_modules()
    probe = ("import importlib, json, paxos_core; print(json.dumps([paxos_core.__file__] + "
             "[importlib.import_module(m).__file__ for m in %r]))" % modules)
    result = run([python, "-c", probe], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    package, *files = json.loads(result.stdout)
    venv_root = Path(python).parent.parent
    assert Path(package).is_relative_to(venv_root), package        # the wheel's copy, not this tree's
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for module, path in zip(modules, files):
        assert path.endswith(suffixes) and path.endswith(".so"), (module, path)
        assert Path(path).is_relative_to(venv_root), (module, path)


# ---------------------------------------------------------------------------------------------- child processes


def test_child_refuses_to_run_another_paxos_core_with_one_line(tmp_path):
    env = dict(os.environ, **{spawn.PACKAGE_ENV: str(tmp_path / "elsewhere" / "paxos_core")})
    result = run([sys.executable, "-c", spawn.BOOT, "paxos_core", "info"], cwd=ROOT, env=env, timeout=120)
    assert result.returncode == spawn.MISMATCH_EXIT
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "imported paxos_core from %s" % spawn.PACKAGE_DIR in result.stderr


def test_child_started_in_a_source_tree_imports_its_parents_package(tmp_path):
    source = copy_source(tmp_path / "source")           # a tree with no compiled modules, as the current directory
    result = run(spawn.python_command("paxos_core", "info"), cwd=source, env=spawn.environment(), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NOT COMPILED" not in result.stdout
    assert str(source) not in result.stdout and spawn.PACKAGE_DIR in result.stdout


def test_installed_package_serves_kv_from_inside_a_source_tree(built, tmp_path):
    """`pip install` (not editable), then `paxos-core init`, `node` and `kv` run with the source tree as
    current directory: the workers must import the installed package, not the tree's uncompiled modules."""
    _, _, python = built
    script = Path(python).parent / "paxos-core"
    source = copy_source(tmp_path / "source")
    cluster = tmp_path / "cluster"
    init = run([script, "init", "--nodes", 3, "--workers", 1, "--groups", 2, "--no-curve",
                "--base-port", free_base_port(3, 1), cluster], cwd=source, timeout=120)
    assert init.returncode == 0, init.stderr
    nodes, logs = {}, {}
    try:
        for node in (1, 2, 3):
            logs[node] = tmp_path / ("node%d.log" % node)
            with open(logs[node], "wb") as log:
                nodes[node] = subprocess.Popen([str(script), "node", str(cluster / ("node%d.toml" % node))],
                                               cwd=source, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL)

        def put():
            result = run([script, "kv", "--cluster", cluster, "--timeout", 5, "put", "greeting", "hello"],
                         cwd=source, timeout=60)
            return result.returncode == 0 and result.stdout.strip() == "OK"

        try:
            wait_for(put, timeout=90, interval=0.5, message="kv put on the installed cluster")
        except AssertionError as exc:
            tails = "\n".join("--- node %d:\n%s" % (n, p.read_text()[-1500:]) for n, p in logs.items())
            raise AssertionError("%s\n%s" % (exc, tails)) from None
        get = run([script, "kv", "--cluster", cluster, "get", "greeting"], cwd=source, timeout=60)
        assert get.returncode == 0 and get.stdout == "hello\n", get.stderr
        for node, proc in nodes.items():
            assert proc.poll() is None, logs[node].read_text()[-3000:]
            assert "No module named" not in logs[node].read_text()
    finally:
        _stop(nodes)


def _stop(nodes):
    """SIGTERM every node by pid (its supervisor stops its workers), then SIGKILL whatever is left."""
    children = {pid for proc in nodes.values() if proc.poll() is None for pid in descendants(proc.pid)}
    for proc in nodes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in nodes.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in children:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10, message="workers gone")


# ---------------------------------------------------------------------------------------------- tools/


def test_tools_readme_lists_every_script():
    listed = set(re.findall(r"^\| `([^`]+)` \|", (ROOT / "tools" / "README.md").read_text(), re.M))
    present = {p.name for p in (ROOT / "tools").iterdir() if p.is_file() and p.name != "README.md"}
    assert listed == present


def _soak(tmp_path, command, *args):
    env = dict(os.environ, PAXOS_CORE=command)
    return run(["bash", ROOT / "tools" / "soak.sh", "--out", tmp_path / "soak", *args], cwd=ROOT, env=env,
               timeout=300)


def test_soak_script_runs_seeds_in_chunks_and_sums_them_up(tmp_path):
    result = _soak(tmp_path, "%s -m paxos_core" % sys.executable, "--seeds", 3, "--chunk", 2, "--jobs", 1,
                   "--nodes", 3, "--groups", 1)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("chunk ")] == ["chunk 0..1", "chunk 2..2"]
    assert "soak summary: seeds=3 chunks=2 failed_chunks=0 violations=0 " in lines[-1]
    assert (tmp_path / "soak" / "summary.txt").read_text().strip() == lines[-1]
    assert sorted(p.name for p in (tmp_path / "soak").glob("chunk-*.log")) == ["chunk-0.log", "chunk-2.log"]


def test_soak_script_reports_a_failing_chunk_with_its_reproduce_line(tmp_path):
    stub = tmp_path / "fake_sim.py"            # a `paxos-core` whose seed 1 always breaks an invariant
    stub.write_text(
        "import sys\n"
        "args = sys.argv[sys.argv.index('--seeds'):]\n"
        "seeds, base = int(args[1]), int(args[3])\n"
        "bad = base <= 1 < base + seeds\n"
        "if bad:\n"
        "    print('seed=1 FAILED (planted)')\n"
        "    print('    reproduce: paxos-core sim --seeds 1 --seed-base 1')\n"
        "print('seeds=%d violations=%d trace=abc123' % (seeds, int(bad)))\n"
        "sys.exit(1 if bad else 0)\n")
    result = _soak(tmp_path, "%s %s" % (sys.executable, stub), "--seeds", 4, "--chunk", 2)
    assert result.returncode == 1
    summary = result.stdout[result.stdout.index("soak summary:"):]
    assert summary.startswith("soak summary: seeds=4 chunks=2 failed_chunks=1 violations=1 ")
    assert "failed chunk: %s" % (tmp_path / "soak" / "chunk-0.log") in summary
    assert "reproduce: paxos-core sim --seeds 1 --seed-base 1" in summary


def test_inspect_log_tool_shows_what_recovery_rebuilds(tmp_path):
    from paxos_core.storage.log import RocksLog
    from paxos_core.storage.records import INSTANCE_RECORD, PROMISE_RECORD

    log = RocksLog(tmp_path / "worker-0", 1, 0xABC)
    log.write([(PROMISE_RECORD, 3, 0, 0, 65537, 0, 0, 0, None)]
              + [(INSTANCE_RECORD, 3, i, 0, 65537, 65537, 0, 0, b"value-%d" % i) for i in range(2)])   # 2 votes
    log.close()
    tool = ROOT / "tools" / "inspect_log.py"
    result = run([sys.executable, tool, tmp_path / "worker-0", "--json"], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["node"], doc["cluster"], doc["damaged_records"], doc["scan_error"]) == (1, 0xABC, 0, None)
    (group,) = doc["groups"]
    assert (group["group"], group["promised"], group["top"], group["state"]) == (3, 65537, 2, "ok")
    assert (group["learned"], group["accepted_above_mark"]) == (0, 2)
    listed = run([sys.executable, tool, tmp_path / "worker-0", "--records", "--group", 3], cwd=ROOT, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["type=promise", "type=instance",
                                                                         "type=instance"]
    missing = run([sys.executable, tool, tmp_path / "nothing-here"], cwd=ROOT, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("inspect_log: cannot open")
    assert missing.stderr.count("\n") == 1
