"""Build script for paxos-core's compiled modules.

Every ``.pyx`` file under ``paxos_core/`` becomes one extension module. Extern-only C declarations live in
``pxd/`` and the C sources they describe in ``csrc/``. Set ``PAXOS_CORE_PROFILE=1`` to build with Cython
profiling hooks (for cProfile / py-spy attribution), which slows the hot paths down, and e.g.
``PAXOS_CORE_OPT="-O0 -g0"`` to compile faster into slower code (tests/test_packaging.py does, to stay quick).

An sdist ships the ``.pyx``/``.pxd`` files, ``pxd/`` and ``csrc/`` (MANIFEST.in) but not the generated C: building
from it runs Cython (a build requirement in pyproject.toml). A tree with no ``.pyx`` file stops the build with
an error rather than produce a package with no compiled modules.
"""
import os
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
C_SOURCES = {
    # module -> extra C sources compiled into it
    "paxos_core.wire.checksum": ["csrc/crc32c.c"],
}
PROFILE = os.environ.get("PAXOS_CORE_PROFILE") == "1"
OPT = os.environ.get("PAXOS_CORE_OPT", "-O2").split()


def extensions():
    pyx_files = sorted((ROOT / "paxos_core").rglob("*.pyx"))
    if not pyx_files:
        sys.exit("paxos-core setup.py: no .pyx file under %s: this source tree is incomplete (an sdist must ship "
                 "paxos_core/**/*.pyx, *.pxd, pxd/ and csrc/, see MANIFEST.in); refusing to build a package "
                 "without its compiled modules" % (ROOT / "paxos_core"))
    missing = [src for srcs in C_SOURCES.values() for src in srcs if not (ROOT / src).is_file()]
    if missing:
        sys.exit("paxos-core setup.py: C sources missing from %s: %s (see MANIFEST.in)" % (ROOT, ", ".join(missing)))
    exts = []
    for pyx in pyx_files:
        rel = pyx.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts)
        sources = [str(rel)] + C_SOURCES.get(module, [])
        macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        if PROFILE:
            macros.append(("CYTHON_TRACE", "1"))
        exts.append(
            Extension(
                module,
                sources=sources,
                include_dirs=[numpy.get_include(), "csrc"],
                define_macros=macros,
                extra_compile_args=OPT + ["-Wno-unused-function", "-Wno-unreachable-code"],
            )
        )
    return exts


directives = {"language_level": "3", "embedsignature": True}
if PROFILE:
    directives.update(profile=True, linetrace=True)

setup(
    ext_modules=cythonize(
        extensions(),
        include_path=["pxd", "."],
        compiler_directives=directives,
        quiet=True,
    ),
)
