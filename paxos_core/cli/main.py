"""The `paxos-core` command line."""
import argparse
import sys

from .._version import __version__


def cmd_info(args):
    import platform

    from .. import native
    from ..wire import checksum

    print("paxos-core %s (Python %s)" % (__version__, platform.python_version()))
    for name, compiled, path in native.all_status():
        print("  %-32s %s  %s" % (name, "compiled" if compiled else "NOT COMPILED", path))
    print("  crc32c: %s" % ("SSE4.2 instruction" if checksum.hardware_accelerated() else "portable tables"))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="paxos-core", description="Multi-Paxos for Python.")
    parser.add_argument("--version", action="version", version="paxos-core " + __version__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print the version and which native modules are compiled")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
