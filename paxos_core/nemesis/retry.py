"""An operator's admin call, retried with a fresh client until a deadline.

The nemesis operators (the `member` fault, the `regroup` fault, the heal that finishes an add left undone) act
on a cluster whose members change under them: the node whose key or address a client used may have left, or
be down for a while. Each try therefore makes a new client, and an error that says "not now" (PaxosError)
is retried; anything else (a failed check, a bug) is raised at once.
"""
import time

from .. import errors


def until_done(make_client, what, deadline, pause, final=lambda exc: False):
    """``what(client)`` with ``client = make_client()`` (closed after each try), tried at least once and again,
    ``pause`` seconds apart, while it raises a PaxosError for which ``final(exc)`` is false, until it returns
    or ``deadline`` (time.monotonic()) has passed: then errors.Timeout, naming the last error."""
    while True:
        client = make_client()
        try:
            return what(client)
        except errors.PaxosError as exc:
            if final(exc):
                raise
            last = exc
        finally:
            client.close()
        if time.monotonic() >= deadline:
            raise errors.Timeout("%s: not done in time (last: %s: %s)"
                                 % (getattr(what, "__name__", what), type(last).__name__, last)) from last
        time.sleep(pause)
