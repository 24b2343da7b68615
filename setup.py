"""Build script for paxos-core's compiled modules.

Every ``.pyx`` file under ``paxos_core/`` becomes one extension module. Extern-only C declarations live in
``pxd/`` and the C sources they describe in ``csrc/``. Set ``PAXOS_CORE_PROFILE=1`` to build with Cython
profiling hooks (for cProfile / py-spy attribution), which slows the hot paths down.
"""
import os
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


def extensions():
    exts = []
    for pyx in sorted((ROOT / "paxos_core").rglob("*.pyx")):
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
                extra_compile_args=["-O2", "-Wno-unused-function", "-Wno-unreachable-code"],
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
