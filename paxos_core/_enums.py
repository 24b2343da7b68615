"""Make the members of Cython `cpdef enum`s plain module-level ints for Python callers.

Cython exposes a `cpdef enum` to Python only as an enum class; modules call ``export_members(globals(), E)``
so that ``from module import MEMBER`` works too (Cython callers cimport the C constants instead).
"""


def export_members(namespace, *enums):
    for enum in enums:
        for name, member in enum.__members__.items():
            namespace[name] = int(member)
