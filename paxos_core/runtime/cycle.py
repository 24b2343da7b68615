"""One cycle of the effect contract: the only place that turns an engine's effects into I/O.

    fx = engine.take_effects()
    1. send fx.send_now                      (they depend on nothing unsynced)
    2. answer fx.serve from the log           (chosen values are already durable or in this node's log)
    3. log.write(fx.records)                  ONE batch, ONE fsync, for every group of the worker
    4. send fx.send_after                    (promises, votes, prepares: their records are now durable)
    5. engine.persisted(fx.token)

Whatever ``persisted`` makes the engine do (count its own vote, choose, start the next instance) waits for
the next cycle, so a cycle never syncs twice. The caller applies ``fx.chosen`` and answers clients from
``fx.acks``.
"""
from ..wire.codec import encode_entries
from ..wire.message import CATCHUP_REPLY, Message


def serve_messages(engine, log, serve):
    """CATCHUP_REPLY messages for the engine's serve effects, read from the log."""
    out = []
    for dest, group, first, end in serve:
        entries = log.read_chosen(group, first, end)
        if entries:
            chosen_next, chain = engine.learned(group)
            out.append((dest, Message(CATCHUP_REPLY, group, first, 0, chosen_next, 0, chain,
                                      encode_entries(entries))))
    return out


def run_cycle(engine, log, send):
    """Carry out one effect batch; `send(list of (dest, Message))` transmits. Returns the Effects."""
    fx = engine.take_effects()
    if fx.send_now:
        send(fx.send_now)
    if fx.serve:
        replies = serve_messages(engine, log, fx.serve)
        if replies:
            send(replies)
    if fx.records:
        log.write(fx.records)
    if fx.send_after:
        send(fx.send_after)
    engine.persisted(fx.token)
    return fx
