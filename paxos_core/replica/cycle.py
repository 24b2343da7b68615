"""One cycle of the effect contract: the only code that turns an engine's effects into storage and messages.

    fx = engine.take_effects()
    1. send fx.send_now                  (they depend on nothing unsynced)
    2. log.write(fx.records, fx.deletes, store_ops)
                                          ONE batch, ONE synced write, for every group of the worker (with
                                          truncation's range deletes, and a snapshot's swap into the state
                                          machine's column family when there is one)
    3. send fx.send_after                (promises, votes, prepares: their records are now durable)
    4. answer fx.serve from the log       (after the write: the values this cycle learned are durable, and
                                          every record below the learned mark now holds a chosen value)
    5. engine.persisted(fx.token)

Whatever ``persisted`` makes the engine do (count its own vote, choose, start the next instance) waits for
the next cycle, so a cycle never syncs twice. The caller applies ``fx.chosen`` and answers clients from the
outcomes. `log` is anything with ``write(records, deletes, store_ops)`` (durable when it returns),
``read_chosen(group, first, end)``, ``read_chain(group, instance)`` and ``read_low(group)``: RocksLog,
MemoryLog, or the simulator's disk.
"""
from ..core.learner import chain_next
from ..storage.records import BYTES_UNKNOWN, CHAIN_INTERVAL as CHAIN_EVERY
from ..wire.codec import encode_entries
from ..wire.message import CATCHUP_REPLY, Message

ADOPT_TAG_BYTE = b"\xc0"         # core/voters.pyx: the first byte of a membership ADOPT value

ENTRIES_HEADER_SIZE = 4         # encode_entries' layout (wire/codec.pyx): u32 count, then per entry ...
ENTRY_HEADER_SIZE = 20          # ... u64 instance, u64 ballot, u32 length, the value


def serve_messages(engine, log, serve, max_bytes=None):
    """CATCHUP_REPLY messages for the engine's serve effects, read from the log.

    A reply carries the values [first, end), the sender's chain at `end` (from the engine, or from the CHAIN
    record at `end`) and the sender's chosen mark: the receiver learns nothing unless the values give that
    chain. A range the log cannot serve whole (a missing or damaged record) is not served. A missing or
    damaged CHAIN record at `end` does not stop it: the chain there is carried on from a lower one.

    `max_bytes` bounds a reply's value (the encoded entries): a longer range is cut after the last value that
    fits (always at least one), and the reply ends there with the chain at its new end. The receiver sees
    from the chosen mark that it is still behind and asks again at once, so a lagging node catches up on any
    amount of data in replies that each fit a frame.
    """
    out = []
    short = 0
    for dest, group, first, end, chain in serve:
        if not engine.hosts(group):
            continue        # no longer held here (removed, or handed over in this very cycle): nothing to serve
        entries = log.read_chosen(group, first, end)
        if len(entries) != end - first:
            short += 1
            continue
        if max_bytes is not None:
            cut = _cut(entries, max_bytes)
            if cut < len(entries):
                end, chain = _chain_at_cut(log, group, first, entries, cut)
                if end is None:
                    short += 1
                    continue
                entries = entries[:end - first]
        if chain < 0:
            chain = log.read_chain(group, end)
            if chain is None:
                # The CHAIN record at `end` is missing or damaged: the chain there from a lower one (or the
                # LOW record) and the values since, as for a cut reply.
                end, chain = _chain_at_cut(log, group, first, entries, len(entries))
                if end is None:
                    short += 1
                    continue
                entries = entries[:end - first]
        chosen_next = engine.learned(group)[0]
        out.append((dest, Message(CATCHUP_REPLY, group, first, 0, end, chosen_next, chain,
                                  encode_entries(entries), inc=engine.incarnation_of(group))))
    return out, short


def run_cycle(engine, log, send, serve_before_write=False, observe=None, max_reply_bytes=None, store_ops=None,
              extra_records=None):
    """Carry out one effect batch; `send(list of (dest, Message))` transmits. Returns (Effects, serve misses).

    `store_ops`: state machine writes ``(puts, deletes, delete_ranges)`` that must be durable in the same
    atomic write as the batch's records (a snapshot's staging and swap); `extra_records`: log records of the
    replica layer for the same write (a snapshot's CHECKPOINT record).

    `max_reply_bytes` bounds each catch-up reply (see serve_messages); None: unbounded.

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
        replies, short = serve_messages(engine, log, fx.serve, max_reply_bytes)
        if replies:
            send(replies)
    records = fx.records + extra_records if extra_records else fx.records
    if records or fx.deletes or store_ops:
        log.write(records, fx.deletes, store_ops)
    if fx.send_after:
        send(fx.send_after)
    if fx.serve and not serve_before_write:
        replies, short = serve_messages(engine, log, fx.serve, max_reply_bytes)
        if replies:
            send(replies)
    engine.persisted(fx.token)
    return fx, short


def _cut(entries, max_bytes):
    """How many of `entries` fit `max_bytes` once encoded (encode_entries' layout); at least one."""
    size = ENTRIES_HEADER_SIZE
    for k, (_, _, value) in enumerate(entries):
        size += ENTRY_HEADER_SIZE + len(value)
        if size > max_bytes and k > 0:
            return k
    return len(entries)


def _chain_at_cut(log, group, first, entries, cut):
    """(end, chain at end) for a reply cut after entries[:cut] (values of instances first, first+1, ...).

    The chain at `first` is not kept; the log keeps it every CHAIN_EVERY instances, so it is taken from the
    nearest CHAIN record at or below `first` (or from the LOW record, at the truncation mark; 0 at instance
    0) and carried on over the values from there, CHAIN_EVERY values at a time. If those values cannot be
    read, the reply is cut further back, at the last CHAIN record inside it; (None, None) if there is none
    (the range is not served)."""
    end = first + cut
    low_record = log.read_low(group)
    low, low_chain = low_record[:2] if low_record is not None else (0, 0)
    base = first - first % CHAIN_EVERY
    while base > low and log.read_chain(group, base) is None:
        base -= CHAIN_EVERY
    if base <= low:
        base, chain = low, low_chain
    else:
        chain = log.read_chain(group, base)
    at = base
    while at < first:
        upto = min(at + CHAIN_EVERY, first)
        below = log.read_chosen(group, at, upto)
        if len(below) != upto - at:
            chain = None
            break
        for instance, _, value in below:
            chain = chain_next(chain, instance, value)
        at = upto
    if chain is not None:
        for instance, _, value in entries[:cut]:
            chain = chain_next(chain, instance, value)
        return end, chain
    aligned = end - end % CHAIN_EVERY
    if aligned > first:
        chain = log.read_chain(group, aligned)
        if chain is not None:
            return aligned, chain
    return None, None


def chain_at(log, group, instance, with_config=False):
    """(chain, value bytes) below `instance` from the durable log: from the nearest CHAIN record at or below
    it (or the LOW record at the truncation mark), carried on over the chosen values up to `instance`. None
    if the log cannot give it (the instance is below the truncation mark, or a record is missing or
    damaged). The byte count is BYTES_UNKNOWN when a record on the way did not know it.

    `with_config`: (chain, value bytes, configuration state at the base record, [(instance, ADOPT value)]
    between the base and `instance`), from which Engine.config_state_after gives the configuration state at
    `instance` (a snapshot at `instance` carries it)."""
    low_record = log.read_low(group, with_config=True)
    if low_record is None:
        return None
    low, chain, nbytes, config = low_record
    if instance < low:
        return None
    base = instance - instance % CHAIN_EVERY
    while base > low:
        found = log.read_chain_bytes(group, base, with_config=True)
        if found is not None:
            chain, nbytes, config = found
            break
        base -= CHAIN_EVERY
    else:
        base = low
    values = log.read_chosen(group, base, instance) if instance > base else []
    if len(values) != instance - base:
        return None
    adopts = []
    for i, _, value in values:
        chain = chain_next(chain, i, value)
        if nbytes != BYTES_UNKNOWN:
            nbytes += len(value)
        if with_config and value[:1] == ADOPT_TAG_BYTE:
            adopts.append((i, value))
    if with_config:
        return chain, nbytes, config, adopts
    return chain, nbytes
