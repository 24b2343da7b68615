"""One cycle of the effect contract: the only code that turns an engine's effects into storage and messages.

    fx = engine.take_effects()
    1. send fx.send_now                  (they depend on nothing unsynced)
    2. log.write(fx.records)              ONE batch, ONE synced write, for every group of the worker
    3. send fx.send_after                (promises, votes, prepares: their records are now durable)
    4. answer fx.serve from the log       (after the write: the values this cycle learned are durable, and
                                          every record below the learned mark now holds a chosen value)
    5. engine.persisted(fx.token)

Whatever ``persisted`` makes the engine do (count its own vote, choose, start the next instance) waits for
the next cycle, so a cycle never syncs twice. The caller applies ``fx.chosen`` and answers clients from the
outcomes. `log` is anything with ``write(records)`` (durable when it returns), ``read_chosen(group, first,
end)`` and ``read_chain(group, instance)``: RocksLog, MemoryLog, or the simulator's disk.
"""
from ..wire.codec import encode_entries
from ..wire.message import CATCHUP_REPLY, Message


def serve_messages(engine, log, serve):
    """CATCHUP_REPLY messages for the engine's serve effects, read from the log.

    A reply carries the values [first, end), the sender's chain at `end` (from the engine, or from the CHAIN
    record at `end`) and the sender's chosen mark: the receiver learns nothing unless the values give that
    chain. A range the log cannot serve whole (a missing or damaged record) is not served.
    """
    out = []
    short = 0
    for dest, group, first, end, chain in serve:
        entries = log.read_chosen(group, first, end)
        if len(entries) != end - first:
            short += 1
            continue
        if chain < 0:
            chain = log.read_chain(group, end)
            if chain is None:
                short += 1
                continue
        chosen_next = engine.learned(group)[0]
        out.append((dest, Message(CATCHUP_REPLY, group, first, 0, end, chosen_next, chain,
                                  encode_entries(entries), inc=engine.incarnation_of(group))))
    return out, short


def run_cycle(engine, log, send, serve_before_write=False, observe=None):
    """Carry out one effect batch; `send(list of (dest, Message))` transmits. Returns (Effects, serve misses).

    `observe(fx)`, if given, sees the batch before anything of it is carried out (the simulator's oracle).
    `serve_before_write` is the planted bug "serve-before-write": catch-up answered from the log before this
    cycle's records are written (a value learned in this cycle is then served as the older vote).
    """
    fx = engine.take_effects()
    if observe is not None:
        observe(fx)
    short = 0
    if fx.send_now:
        send(fx.send_now)
    if fx.serve and serve_before_write:
        replies, short = serve_messages(engine, log, fx.serve)
        if replies:
            send(replies)
    if fx.records:
        log.write(fx.records)
    if fx.send_after:
        send(fx.send_after)
    if fx.serve and not serve_before_write:
        replies, short = serve_messages(engine, log, fx.serve)
        if replies:
            send(replies)
    engine.persisted(fx.token)
    return fx, short
