"""What every `paxos-core` command shares: one-line usage errors, defaults in --help, checked numbers."""
import argparse
import math


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ONE line on stderr (exit 2): ``paxos-core kv put: error: ...``.

    argparse prints the usage block first; a script's log then holds several lines for one mistake, and the
    usage is one `--help` away. Subparsers are built with the parser's own class, so they inherit this."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, one_line(message), self.prog))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, written as a user types it (``3,5``, not ``(3, 5)``).

    An option repeated on a subcommand (``--cluster`` on ``kv`` and on ``kv put``) carries its default in
    ``shown_default``: the subcommand's own default is SUPPRESS, so that it never overwrites the value given
    before the subcommand's name. A help text that already speaks of its default is left as it is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or not (action.option_strings or action.nargs == argparse.OPTIONAL):
            return text
        default = getattr(action, "shown_default", action.default)
        if default is None or default is argparse.SUPPRESS:
            return text
        return "%s (default: %s)" % (text, show(default).replace("%", "%%"))


def show(value):
    """A default value as it would be typed on the command line."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(show(v) for v in value)
    if value == "":
        return "''"
    return str(value)


def one_line(text):
    """`text` with its lines joined: every error the command line prints is one line."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def int_range(lo, hi=None, what="a number"):
    """An argparse type: an integer in lo..hi (hi None: no upper bound)."""
    def parse(text):
        try:
            value = int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected %s (an integer), got %r" % (what, text)) from None
        # The wording of config.py's checks of the same numbers (`init --workers 0` says what write_cluster says).
        if value < lo:
            raise argparse.ArgumentTypeError("must be an integer >= %d, got %d" % (lo, value))
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError("must be an integer <= %d, got %d" % (hi, value))
        return value
    parse.__name__ = what          # argparse names the type in messages it writes itself
    return parse


def node_host(text):
    """An argparse type: ``ID=HOST`` (a node id >= 1 and its address) -> (id, host)."""
    node, sep, host = text.partition("=")
    if not sep or not host.strip():
        raise argparse.ArgumentTypeError("expected ID=HOST (e.g. 1=10.0.0.5), got %r" % text)
    return int_range(1, None, "a node id")(node.strip()), host.strip()


node_host.__name__ = "ID=HOST"


def int_list(lo, hi=None):
    """An argparse type: a comma list of integers, each in lo..hi."""
    item = int_range(lo, hi)

    def parse(text):
        words = [w for w in text.split(",") if w.strip()]
        if not words:
            raise argparse.ArgumentTypeError("expected a comma-separated list of integers, got %r" % text)
        values = []
        for w in words:
            try:
                values.append(item(w.strip()))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError("in %r: %s" % (text, exc)) from None
        return tuple(values)
    parse.__name__ = "comma list"
    return parse


def positive_float(text):
    """An argparse type: a finite number > 0 (seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds, got %r" % text) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a number > 0, got %r" % text)
    return value


def non_negative_float(text):
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, got %r" % text) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a number >= 0, got %r" % text)
    return value


def word_list(choices):
    """An argparse type: a comma list of words, each one of `choices`."""
    def parse(text):
        words = tuple(w for w in text.split(",") if w)
        bad = [w for w in words if w not in choices]
        if bad or not words:
            raise argparse.ArgumentTypeError("expected a comma list of %s, got %r" % ("/".join(choices), text))
        return words
    parse.__name__ = "comma list"
    return parse


def add_shared(parser, flags, repeated=False, **kwargs):
    """Add an option that a command and its subcommands both take (``kv --cluster D put`` and ``kv put
    --cluster D``). On the subcommand (`repeated`) its default is SUPPRESS, so it only ever sets a value that
    was typed there; the command's own option provides the default."""
    if repeated:
        default = kwargs.pop("default", None)
        kwargs["default"] = argparse.SUPPRESS
        action = parser.add_argument(*flags, **kwargs)
        action.shown_default = default
        return action
    return parser.add_argument(*flags, **kwargs)
