"""`paxos-core kv put | get | delete | cas`: the replicated key-value store from the command line.

Values are bytes. A VALUE argument is the literal text, ``-`` for standard input, ``@FILE`` for a file's bytes,
or ``@@TEXT`` for the literal ``@TEXT``. ``get`` prints the value and a newline; ``get -o FILE`` writes its
exact bytes (``-o -``: to stdout, no newline). Exit codes: 0 done, 1 the answer is no (key not found, cas
failed), 2 usage or configuration error, 3 the operation failed and changed nothing (the error's one line is on
stderr), 4 the outcome of a write is unknown (a Timeout: it may be applied, now or later). Exit 4 names the
write's request id on stderr; ``--request-id CLIENT:SEQ`` retries that very write, which is applied at most once.
"""
import argparse
import base64
import json
import os
import sys

from ..errors import Timeout, ValueTooLarge

EXIT_NO = 1
EXIT_FAILED = 3
EXIT_UNKNOWN = 4

VALUE_HELP = "the value: TEXT, '-' for stdin, '@FILE' for a file's bytes, '@@TEXT' for a TEXT that starts with '@'"


class UsageError(Exception):
    """A mistake in the command line found after parsing; cmd_kv makes it the parser's one-line error (exit 2)."""


def read_value(arg, stdin):
    """The bytes a VALUE argument stands for. `stdin` is a one-element list: standard input is read once."""
    if arg == "-":
        if stdin[0]:
            raise UsageError("standard input ('-') can give only one value")
        stdin[0] = True
        return sys.stdin.buffer.read()
    if arg.startswith("@@"):
        return os.fsencode(arg[1:])
    if arg.startswith("@"):
        if arg == "@":
            raise UsageError("'@' needs a file name ('@FILE'); write '@@' for a value that starts with '@'")
        with open(arg[1:], "rb") as f:
            return f.read()
    return os.fsencode(arg)


def _text(value):
    """(text, encoding) of bytes for JSON: UTF-8 when it decodes, else base64."""
    if value is None:
        return None, None
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"


def _shown(value):
    """Bytes for a one-line message: printable UTF-8 as it is, anything else by its size."""
    if value is None:
        return "absent"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and len(text) <= 200:
        return text
    return "%d bytes" % len(value)


def _record(args, key, **fields):
    text, encoding = _text(key)
    out = {"op": args.op, "key": text, "key_encoding": encoding}
    out.update(fields)
    return out


def _emit(args, record):
    if args.write_out == "json":
        print(json.dumps(record, ensure_ascii=False), flush=True)


def _check_size(cfg, what, op):
    """Refuse locally what every node would refuse (ValueTooLarge), before sending megabytes for nothing. The
    limit applies to the proposal: the encoded operation inside its client envelope."""
    from ..replica import envelope

    size = len(envelope.client(0, 0, 0, b"")) + len(op)
    if size > cfg.max_value_bytes:
        raise ValueTooLarge("the %s is a proposal of %d bytes, larger than the cluster's paxos.max_value_bytes = "
                            "%d (set in its node files, e.g. %s)" % (what, size, cfg.max_value_bytes, cfg.path))


def request_id(text):
    """An argparse type: CLIENT:SEQ, the request id exit 4 printed."""
    client, sep, seq = text.partition(":")
    try:
        client_id, seq_no = int(client), int(seq)
    except ValueError:
        client_id = seq_no = -1
    if not sep or not 0 < client_id < 1 << 64 or not 0 < seq_no < 1 << 63:
        raise argparse.ArgumentTypeError("expected CLIENT:SEQ (two positive integers, as exit 4 prints them), "
                                         "got %r" % text)
    return client_id, seq_no


def prepare(args):
    """Read the command's values (stdin, files) before anything is sent: (key, expected, new) as bytes or None."""
    key = os.fsencode(args.key)
    stdin = [False]
    if args.op == "put":
        return key, None, read_value(args.value, stdin)
    if args.op == "cas":
        values = iter(args.values)
        expected = None if args.absent else read_value(next(values), stdin)
        new = None if args.delete else read_value(next(values), stdin)
        return key, expected, new
    return key, None, None


def run(args, client, cfg, key, expected, new):
    """Carry out one kv command on a connected client; returns the exit code."""
    from ..kv import KV
    from ..statemachine import kv as ops

    kv = KV(client, client.groups)
    ops.encode_get(key)                                  # a key that is too long: ValueTooLarge, one line
    if args.op == "get":
        return _get(args, kv, key)
    if args.op == "put":
        op = ops.encode_put(key, new)
        _check_size(cfg, "put of a %d-byte value" % len(new), op)
    elif args.op == "delete":
        op = ops.encode_delete(key)
    else:
        op = ops.encode_cas(key, expected, new)
        _check_size(cfg, "cas", op)
    try:
        # One proposal, put and delete as cas: the command line shows the value a failed cas found, and a
        # --request-id retries the earlier attempt of exactly this write.
        result = client.propose(kv.group(key), op, request_id=args.request_id)
    except Timeout as exc:
        return _unknown_outcome(args, key, exc)
    status, current = ops.decode_result(result.result)
    name = ops.STATUS_NAMES.get(status, str(status))
    if status == ops.ERROR:
        # The store refused a malformed operation; the result carries its message.
        print("paxos-core: kv %s: the store refused the operation: %s" % (args.op, _shown(current)),
              file=sys.stderr)
        return EXIT_FAILED
    if args.write_out == "json":
        fields = {"status": name, "ok": status == ops.OK}
        if args.op == "delete":
            fields["found"] = status != ops.NOT_FOUND
        if args.op == "cas" and status == ops.CAS_FAILED:
            text, encoding = _text(current)
            fields.update(current_found=current is not None, current=text, current_encoding=encoding)
        _emit(args, _record(args, key, **fields))
        return 0 if status == ops.OK else EXIT_NO
    if status == ops.CAS_FAILED:
        print("cas failed: current value is %s" % _shown(current), file=sys.stderr)
        return EXIT_NO
    if status == ops.NOT_FOUND:
        print("(not found)", file=sys.stderr)
        return EXIT_NO
    print(name)
    return 0 if status == ops.OK else EXIT_NO


def _unknown_outcome(args, key, exc):
    """Exit 4: the write may or may not be applied. Names its request id, for `--request-id` to ask again."""
    rid = getattr(exc, "request_id", None)
    rid_text = "%d:%d" % tuple(rid) if rid is not None else None
    again = "; to ask again, give the same command with --request-id %s" % rid_text if rid_text else ""
    print("paxos-core: kv %s: the outcome is unknown (%s: %s): the write may still be applied%s"
          % (args.op, type(exc).__name__, " ".join(str(exc).split()), again), file=sys.stderr)
    _emit(args, _record(args, key, status="UNKNOWN", ok=None, request_id=rid_text))
    return EXIT_UNKNOWN


def _get(args, kv, key):
    value = kv.get(key, mode=args.mode)
    if args.write_out == "json":
        if args.output is not None and value is not None:
            _write_output(args.output, value)
            record = _record(args, key, found=True, size=len(value), written_to=args.output)
        else:
            text, encoding = _text(value)
            record = _record(args, key, found=value is not None, value=text, encoding=encoding,
                             size=None if value is None else len(value))
        _emit(args, record)
        return 0 if value is not None else EXIT_NO
    if value is None:
        print("(not found)", file=sys.stderr)
        return EXIT_NO
    if args.output is not None:
        _write_output(args.output, value)
    else:
        sys.stdout.buffer.write(value + b"\n")
        sys.stdout.buffer.flush()
    return 0


def _write_output(path, value):
    if path == "-":
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as f:
        f.write(value)


def register(sub, cluster_opts):
    """The `kv` command and its subcommands; `cluster_opts` is cluster.cluster_opts (--cluster, --timeout,
    --write-out)."""
    p = sub.add_parser("kv", help="use the replicated key-value store",
                       description="put, get, delete and compare-and-set keys of the cluster's key-value store. "
                                   "Exit codes: 0 done, 1 the answer is no (not found, cas failed), 2 usage or "
                                   "configuration error, 3 the operation failed.")
    cluster_opts(p, write_out=True)
    ops = p.add_subparsers(dest="op", required=True, metavar="{put,get,delete,cas}")

    q = ops.add_parser("put", help="set KEY to VALUE", description="Set KEY to VALUE (replicated, then applied). "
                       "VALUE: TEXT, '-' (stdin), '@FILE' (a file's bytes, up to paxos.max_value_bytes: 1 MiB by "
                       "default), '@@TEXT' (TEXT that starts with '@'). Prints OK.")
    q.add_argument("key", metavar="KEY")
    q.add_argument("value", metavar="VALUE", help=VALUE_HELP)
    _retry_opt(q)
    cluster_opts(q, shared=True, write_out=True)

    q = ops.add_parser("get", help="print KEY's value (a missing key exits 1)",
                       description="Print KEY's value and a newline; -o FILE writes its exact bytes instead. "
                                   "A missing key prints '(not found)' on stderr and exits 1.")
    q.add_argument("key", metavar="KEY")
    q.add_argument("--mode", default="lease", choices=["lease", "linearizable", "stale"],
                   help="lease: the master answers while its lease holds; linearizable: a barrier through the "
                        "log; stale: the nearest node's state, possibly behind")
    q.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write the value's exact bytes to FILE ('-': stdout, no newline added)")
    cluster_opts(q, shared=True, write_out=True)

    q = ops.add_parser("delete", help="delete KEY (a missing key exits 1)")
    q.add_argument("key", metavar="KEY")
    _retry_opt(q)
    cluster_opts(q, shared=True, write_out=True)

    q = ops.add_parser("cas", help="compare-and-set: set KEY to NEW if it holds EXPECTED",
                       usage="%(prog)s [options] KEY {EXPECTED NEW | --absent NEW | EXPECTED --delete}",
                       description="Set KEY to NEW only if it holds EXPECTED (--absent: only if it is absent; "
                                   "--delete: delete it if it holds EXPECTED). EXPECTED and NEW are VALUEs as "
                                   "for put. A failed compare exits 1 and names the current value.")
    q.add_argument("key", metavar="KEY")
    # "+", not "*": a "*" would match nothing right after KEY in `cas KEY --absent NEW` and leave NEW over.
    q.add_argument("values", metavar="VALUE", nargs="+", help="EXPECTED and/or NEW, as for put")
    q.add_argument("--absent", action="store_true", help="the key must be absent (no EXPECTED)")
    q.add_argument("--delete", action="store_true", help="delete the key instead of setting it (no NEW)")
    _retry_opt(q)
    cluster_opts(q, shared=True, write_out=True)
    q.set_defaults(check=lambda args, q=q: _check_cas(q, args))
    return p


def _retry_opt(parser):
    parser.add_argument("--request-id", metavar="CLIENT:SEQ", type=request_id, default=None,
                        help="ask again about a write whose outcome was unknown (exit 4): the same command with "
                             "the request id exit 4 printed. It answers the write's result if the write was "
                             "applied (never twice), and exits 4 again while no attempt of it has been")


def _check_cas(parser, args):
    """What argparse cannot check of `kv cas`: the number of values (one-line usage error, exit 2)."""
    if args.absent and args.delete:
        parser.error("--absent and --delete together would change nothing; use `kv put` or `kv delete`")
    need = 2 - args.absent - args.delete
    if len(args.values) != need:
        parser.error("expects KEY EXPECTED NEW, KEY --absent NEW or KEY EXPECTED --delete; got %d value(s) "
                     "after KEY" % len(args.values))
