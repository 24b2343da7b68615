"""Type hints of the public API: every public call is annotated, mypy passes on the public modules (with the
[tool.mypy] configuration of pyproject.toml), mypy catches a caller's type error through them, and the
package ships its py.typed marker."""
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import paxos_core
from paxos_core import errors
from paxos_core.client import Client, ProposeResult
from paxos_core.kv import KV, key_group
from paxos_core.node import Node
from paxos_core.statemachine import KVStateMachine, StateMachine, Store
from paxos_core.statemachine import kv as kv_ops
from paxos_core.statemachine.kv import KVResult

ROOT = Path(__file__).resolve().parent.parent

# The modules of the public API, as mypy is run on them.
PUBLIC_MODULES = ["paxos_core/__init__.py", "paxos_core/errors.py", "paxos_core/client.py", "paxos_core/kv.py",
                  "paxos_core/node.py", "paxos_core/statemachine/__init__.py", "paxos_core/statemachine/base.py",
                  "paxos_core/statemachine/store.py", "paxos_core/statemachine/kv.py"]

CLASSES = [Node, Client, KV, ProposeResult, KVResult, StateMachine, Store, KVStateMachine] + sorted(
    (o for o in vars(errors).values() if inspect.isclass(o) and issubclass(o, errors.PaxosError)),
    key=lambda c: c.__name__)
FUNCTIONS = [key_group, kv_ops.encode_put, kv_ops.encode_get, kv_ops.encode_delete, kv_ops.encode_cas,
             kv_ops.decode_result, kv_ops.session_refusal]


def _unannotated(fn):
    """What of `fn`'s signature has no annotation: parameter names, and "return"."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _public_callables(cls):
    """Public methods (and __init__) defined by paxos-core in `cls` or its paxos-core bases."""
    out = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("paxos_core"):
            continue
        for name, member in vars(klass).items():
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if not inspect.isfunction(member):
                continue
            if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
                continue
            out[name] = member
    return out


def test_every_public_call_is_annotated():
    gaps = {}
    for cls in CLASSES:
        for name, fn in _public_callables(cls).items():
            missing = _unannotated(fn)
            if missing:
                gaps["%s.%s" % (cls.__name__, name)] = missing
    for fn in FUNCTIONS:
        missing = _unannotated(fn)
        if missing:
            gaps["%s.%s" % (fn.__module__, fn.__name__)] = missing
    assert not gaps, gaps
    # What the package exports lazily is among the classes checked.
    for name in ("Node", "Client", "KV", "ProposeResult", "KVResult"):
        assert getattr(paxos_core, name) in CLASSES, name


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """mypy's cache, outside the work tree, shared by this module's runs."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(cache, *args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                           "--cache-dir", str(cache), "--no-error-summary", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_mypy_passes_on_the_public_modules(mypy_cache):
    run = _mypy(mypy_cache, *PUBLIC_MODULES)
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_reports_a_callers_type_errors_through_the_public_hints(tmp_path, mypy_cache):
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent("""\
        import paxos_core
        from paxos_core import KV

        def use(kv: KV, node: paxos_core.Node) -> bool:
            kv.put(b"k", b"v", request_id=(1, 2))
            value: bytes | None = kv.get(b"k", mode="linearizable")
            instance: int = node.propose(1, b"op").instance
            return kv.cas(b"k", value, b"w")
        """))
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""\
        from paxos_core import KV

        def use(kv: KV) -> None:
            kv.put("text", b"v")
            kv.get(b"k", mode="fast")
            status: int = kv.cas(b"k", None, b"w").status
        """))
    # The worktree's package, not an installed copy.
    env = dict(os.environ, MYPYPATH=str(ROOT))
    run = _mypy(mypy_cache, str(good), cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    run = _mypy(mypy_cache, str(bad), cwd=tmp_path, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any("bad.py:4:" in line and '"str"' in line and '"bytes"' in line for line in lines), lines
    assert any("bad.py:5:" in line and "'fast'" in line and '"mode"' in line for line in lines), lines
    assert any("bad.py:6:" in line and '"bool" has no attribute "status"' in line for line in lines), lines


def test_py_typed_is_shipped_in_the_wheel(tmp_path):
    """setuptools' build_py copies exactly what a wheel carries of the package's files."""
    out = tmp_path / "build"
    run = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (out / "paxos_core" / "py.typed").is_file()
    assert (ROOT / "paxos_core" / "py.typed").is_file()
