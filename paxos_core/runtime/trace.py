"""Per-turn event trace of a worker, for `paxos-core bench --trace-one` (off unless PAXOS_CORE_TRACE_DIR is set).

With the variable set, a worker notes the monotonic time (``time.monotonic``: CLOCK_MONOTONIC, one clock for
every process of the machine) of each step of its driver: the poll returned, peer messages and client
requests taken in (with the kinds of the peer messages), the synced write of the cycle began and ended, peer
messages and client replies handed to ZeroMQ, the turn ended. At close it saves them to
``<dir>/trace-node<N>-worker<I>.npy`` (rows of time, event, detail). bench/traceone.py lines these up with the
client's own times to show where one operation's round trip goes. Without the variable nothing here runs:
the driver checks one attribute per turn.
"""
import os
import time

import numpy as np

TRACE_ENV = "PAXOS_CORE_TRACE_DIR"

# Events (the second column); the third is a detail: a bit mask of message kinds (1 << kind) or a count.
POLL = 1            # the poll returned (the poll's timeout in µs)
PEER_IN = 2         # peer messages taken in (mask of kinds)
CLIENT_IN = 3       # client requests taken in (count)
WRITE_BEGIN = 4     # the cycle's synced write began
WRITE_END = 5       # ... and returned (durable)
PEER_OUT = 6        # peer messages about to be handed to the transport (mask of kinds)
REPLY_OUT = 7       # client replies about to be handed to ZeroMQ (count)
TURN_END = 8        # the loop's turn returned
EVENT_NAMES = {POLL: "poll", PEER_IN: "peer-in", CLIENT_IN: "client-in", WRITE_BEGIN: "write-begin",
               WRITE_END: "write-end", PEER_OUT: "peer-out", REPLY_OUT: "reply-out", TURN_END: "turn-end"}

MAX_EVENTS = 4_000_000


def kinds_mask(messages, at=None):
    """Bit mask (1 << kind) of the kinds in `messages` (Messages, or (dest, Message) pairs with at=1)."""
    mask = 0
    for m in messages:
        mask |= 1 << (m[at] if at is not None else m).kind
    return mask


class TurnTrace:
    """The events of one worker, kept in memory (at most MAX_EVENTS) and saved at close."""

    def __init__(self, path, clock=time.monotonic):
        self.path = path
        self.clock = clock
        self.events = []

    def note(self, event, detail=0):
        if len(self.events) < MAX_EVENTS:
            self.events.append((self.clock(), event, detail))

    def save(self):
        rows = np.array(self.events, dtype=np.float64).reshape(-1, 3)
        tmp = self.path + ".tmp.npy"
        np.save(tmp, rows)
        os.replace(tmp, self.path)


class TracedLog:
    """The worker's log as the loop sees it when traced: write() is timed; everything else goes through."""

    def __init__(self, log, trace):
        self._log = log
        self._trace = trace

    def write(self, records, deletes=None, store_ops=None):
        self._trace.note(WRITE_BEGIN, len(records))
        try:
            return self._log.write(records, deletes, store_ops)
        finally:
            self._trace.note(WRITE_END)

    def __getattr__(self, name):
        return getattr(self._log, name)


def trace_for(node_id, index, environ=os.environ):
    """A TurnTrace for this worker if PAXOS_CORE_TRACE_DIR names a directory, else None."""
    directory = environ.get(TRACE_ENV)
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    return TurnTrace(os.path.join(directory, "trace-node%d-worker%d.npy" % (node_id, index)))
