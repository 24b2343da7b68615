"""Simulated clients: real request frames (wire/rpc.py) to the nodes' loops, and a history of every operation.

Each client runs one operation at a time against the replicated key-value store, as a service's request
handler would: it picks a node, follows NotMaster redirects, tries another node when one does not answer
in time or says it cannot serve the group, and gives up at the operation's deadline. Every operation is
recorded with its invoke and complete times on the simulation's one clock and its outcome (ok, fail, or
unknown), for the linearizability check.

Operations: put (a value unique in the run), compare-and-set, reads in the three modes (lease,
linearizable, stale), and batches of puts of one session (one PROPOSE_BATCH; the worker proposes them as
one entry or, with batch envelopes off, as consecutive entries of the session).
"""
from dataclasses import dataclass, field

from ..wire import rpc
from ..statemachine import kv

ATTEMPT_US = 400_000          # an attempt with no reply is given up and tried at another node
DEADLINE_US = 2_500_000       # the operation's deadline (outcome unknown after it, for a write)
KEYS_PER_GROUP = 3
_UNSEEN = object()             # a failed cas that reported no current value


@dataclass
class HistoryOp:
    id: tuple                 # (client id, request seq): unique
    group: int
    key: bytes
    kind: str                 # "write" | "cas" | "read"
    value: bytes = None       # write / cas: the value written
    expected: bytes = None    # cas: the value expected (None: absent)
    mode: str = ""            # read: "lease" | "linearizable" | "stale"
    invoke: int = 0           # µs
    complete: float = float("inf")
    outcome: str = "unknown"  # "ok" | "fail" | "unknown"
    result: object = None     # read: the value returned (None: absent); cas: True if it swapped
    observed: object = _UNSEEN   # cas that did not swap: the value it saw
    node: int = 0             # the node that answered
    payload: bytes = None     # the op sent, when it is not a KV put/cas of key and value (a user state machine)
    notes: list = field(default_factory=list)


class Attempt:
    __slots__ = ("req_id", "node", "sent_at", "retry")

    def __init__(self, req_id, node, sent_at, retry):
        self.req_id = req_id
        self.node = node
        self.sent_at = sent_at
        self.retry = retry          # an earlier attempt may have been proposed


class Operation:
    """One request of a client (one op, or a batch of puts of one session) and its attempts."""

    def __init__(self, ops, group, frame_for, started):
        self.ops = ops                  # [HistoryOp]
        self.group = group
        self.frame_for = frame_for      # (req_id, timeout_ms, min_epoch, retry) -> frame
        self.started = started
        self.attempts = {}              # req_id -> Attempt
        self.tried = set()
        self.min_epoch = 0
        self.proposed = False           # an attempt may have been proposed (it went unanswered, or timed out):
                                        # later sends are retries (the Client's rule)
        self.done = False
        self.current = None             # the req_id of the attempt in flight


class SimClient:
    def __init__(self, sim, index, rng):
        self.sim = sim
        self.index = index
        self.identity = b"client-%d" % index
        self.client_id = rng.getrandbits(62) + 1
        self.seq = 0
        self.rng = rng
        self.op = None
        self.next_req = 1
        self.master_hint = {}           # group -> node
        self.batch_sessions = rng.random() < 0.5

    # -------------------------------------------------------------- issuing
    def next_operation(self, now):
        """Start the client's next operation (called when the previous one finished and it has thought)."""
        sim = self.sim
        if sim.sm_model is not None:
            self._user_operation(now)
            return
        r = self.rng
        group = r.choice(sim.group_ids)
        key = b"k%d" % r.randrange(KEYS_PER_GROUP)
        roll = r.random()
        if roll < 0.30:
            self.seq += 1
            value = b"v-%d-%d" % (self.index, self.seq)
            op = HistoryOp((self.client_id, self.seq), group, key, "write", value=value, invoke=now)
            payload = kv.encode_put(key, value)
            frame_for = self._propose_frame(group, self.seq, payload)
            ops = [op]
        elif roll < 0.38:
            self.seq += 1
            value = b"v-%d-%d" % (self.index, self.seq)
            expected = sim.last_seen.get((group, key))
            op = HistoryOp((self.client_id, self.seq), group, key, "cas", value=value, expected=expected, invoke=now)
            payload = kv.encode_cas(key, expected, value)
            frame_for = self._propose_frame(group, self.seq, payload)
            ops = [op]
        elif roll < 0.48 and self.batch_sessions:
            count = r.randint(2, 4)
            first = self.seq + 1
            ops = []
            payloads = []
            for k in range(count):
                self.seq += 1
                kk = b"k%d" % r.randrange(KEYS_PER_GROUP)
                value = b"v-%d-%d" % (self.index, self.seq)
                ops.append(HistoryOp((self.client_id, self.seq), group, kk, "write", value=value, invoke=now))
                payloads.append(kv.encode_put(kk, value))
            frame_for = self._batch_frame(group, first, payloads)
        else:
            mode = "stale" if roll > 0.95 else ("linearizable" if roll > 0.83 else "lease")
            self.seq += 1          # reads carry no session; the id only needs to be unique
            op = HistoryOp((self.client_id, self.seq), group, key, "read", mode=mode, invoke=now)
            query = kv.encode_get(key)
            frame_for = self._read_frame(group, rpc.READ_MODES[mode], query)
            ops = [op]
        self.op = Operation(ops, group, frame_for, now)
        self._send(now)

    def _user_operation(self, now):
        """An operation of a state machine of the user's: its random_command (writes, sometimes a batch) or
        random_query (reads in the three modes), drawn from this client's rng."""
        sim, r = self.sim, self.rng
        model = sim.sm_model
        group = r.choice(sim.group_ids)
        roll = r.random()
        query = model.random_query(r, group) if roll >= 0.6 else None
        if query is not None:
            mode = "stale" if roll > 0.95 else ("linearizable" if roll > 0.83 else "lease")
            self.seq += 1
            ops = [HistoryOp((self.client_id, self.seq), group, b"", "read", mode=mode, invoke=now)]
            frame_for = self._read_frame(group, rpc.READ_MODES[mode], query)
        else:
            count = r.randint(2, 4) if roll < 0.1 and self.batch_sessions else 1
            first = self.seq + 1
            ops = []
            for _ in range(count):
                self.seq += 1
                ops.append(HistoryOp((self.client_id, self.seq), group, b"", "write", invoke=now,
                                     payload=model.random_command(r, group)))
            frame_for = (self._batch_frame(group, first, [h.payload for h in ops]) if count > 1
                         else self._propose_frame(group, first, ops[0].payload))
        self.op = Operation(ops, group, frame_for, now)
        self._send(now)

    def _propose_frame(self, group, seq, payload):
        client_id = self.client_id

        def frame(req_id, timeout_ms, min_epoch, retry):
            # A re-send after an attempt that may have been proposed carries the retry flag (as the Client's).
            wire_seq = seq | kv.RETRY_FLAG if retry else seq
            return rpc.propose_request(req_id, group, timeout_ms, client_id, wire_seq, payload, min_epoch)
        return frame

    def _batch_frame(self, group, first, payloads):
        client_id = self.client_id

        def frame(req_id, timeout_ms, min_epoch, retry):
            wire_first = first | kv.RETRY_FLAG if retry else first
            return rpc.propose_batch_request(req_id, group, timeout_ms, client_id, wire_first, payloads, min_epoch)
        return frame

    def _new_session(self, op):
        """The session is not known to the group (its earlier operation was never applied, and no attempt of
        this one was proposed): start a fresh session and send the operation again under it, as the Client
        does. Nothing was applied under the old ids."""
        self.client_id = self.rng.getrandbits(62) + 1
        self.seq = 0
        payloads = []
        for hop in op.ops:
            self.seq += 1
            hop.id = (self.client_id, self.seq)
        first = op.ops[0].id[1]
        def payload(hop):
            if hop.payload is not None:
                return hop.payload
            return (kv.encode_cas(hop.key, hop.expected, hop.value) if hop.kind == "cas"
                    else kv.encode_put(hop.key, hop.value))
        if len(op.ops) > 1:
            op.frame_for = self._batch_frame(op.group, first, [payload(h) for h in op.ops])
        else:
            op.frame_for = self._propose_frame(op.group, first, payload(op.ops[0]))
        op.tried = set()
        op.attempts = {}                # nothing of the old session can answer for the new ids

    def _read_frame(self, group, mode, query):
        def frame(req_id, timeout_ms, min_epoch, retry):
            return rpc.read_request(req_id, group, mode, timeout_ms, query, min_epoch)
        return frame

    def _pick_node(self, op):
        # Nodes the membership table removed are no longer the cluster's: a client follows the table.
        nodes = self.sim.client_nodes()
        hint = self.master_hint.get(op.group)
        if hint and hint not in op.tried and hint in nodes:
            return hint
        fresh = [n for n in nodes if n not in op.tried]
        return self.rng.choice(fresh or nodes)

    def _send(self, now, node=None):
        op = self.op
        remaining = op.started + DEADLINE_US - now
        if remaining <= 0 or now >= self.sim.quiet_at:
            self._finish_unknown(now, "deadline")
            return
        if node is not None and node not in self.sim.client_nodes():
            node = None                 # a redirect to a node the table removed
        node = node or self._pick_node(op)
        op.tried.add(node)
        req_id = self.next_req
        self.next_req += 1
        op.attempts[req_id] = Attempt(req_id, node, now, op.proposed)
        op.current = req_id
        frame = op.frame_for(req_id, max(1, remaining // 1000), op.min_epoch, op.proposed)
        self.sim.client_send(self, node, frame)
        self.sim.client_timer(self, req_id, now + min(ATTEMPT_US, remaining))

    # -------------------------------------------------------------- replies
    def on_timer(self, req_id, now):
        op = self.op
        if op is None or op.done or op.current != req_id:
            return
        if now - op.started >= DEADLINE_US:
            self._finish_unknown(now, "deadline")
            return
        op.proposed = True              # the attempt went unanswered: it may have been proposed
        if len(op.tried) >= len(self.sim.node_ids):
            op.tried = set()
        self._send(now)

    def on_reply(self, frame, now, node):
        status, req_id, body = rpc.decode_reply(frame)
        if status == rpc.BATCH:
            for inner in rpc.split_reply_batch(body):
                self.on_reply(inner, now, node)
            return
        if status == rpc.EVENT:
            return
        op = self.op
        if op is None or op.done or req_id not in op.attempts:
            return                      # a late answer to an operation already finished
        first = op.ops[0]
        if status == rpc.OK:
            if first.kind == "read":
                self._finish_read(first, body, now, node)
            else:
                retry = op.attempts[req_id].retry
                if len(op.ops) > 1:
                    results = rpc.decode_propose_batch_ok(body)
                else:
                    results = [rpc.decode_propose_ok(body)]
                statuses = [kv.decode_result(result).status for _, result in results]
                if all(s == kv.SESSION_UNKNOWN for s in statuses) and not retry:
                    # Refused whole, and no other attempt may have been proposed (the Client's rule).
                    self._new_session(op)
                    self.sim.client_retry(self, now + self.rng.randint(100, 1000), None)
                    return
                for hop, (instance, result) in zip(op.ops, results):
                    self._finish_write(hop, instance, result, now, node, retry)
                self._done(now)
            return
        if req_id != op.current:
            return                      # an error from an attempt we already moved on from
        if status == rpc.NOT_MASTER:
            master, epoch = rpc.decode_not_master(body)
            op.min_epoch = max(op.min_epoch, epoch)
            if master:
                self.master_hint[op.group] = master
                op.tried.discard(master)
            self.sim.client_retry(self, now + self.rng.randint(200, 2000), master or None)
            return
        # Timeout (outcome unknown), a stopped or unknown group on that node, overload: try another node.
        if status == rpc.TIMEOUT:
            op.proposed = True
        self.master_hint.pop(op.group, None)
        self.sim.client_retry(self, now + self.rng.randint(1000, 5000), None)

    def retry_now(self, now, node):
        op = self.op
        if op is None or op.done:
            return
        if len(op.tried) >= len(self.sim.node_ids):
            op.tried = set()
        self._send(now, node)

    def _finish_read(self, hop, body, now, node):
        result = kv.decode_result(body)
        hop.complete = now
        hop.node = node
        if result.status == kv.OK or (self.sim.sm_model is not None and result.status == kv.ERROR):
            hop.outcome, hop.result = "ok", result.value
        elif result.status == kv.NOT_FOUND:
            hop.outcome, hop.result = "ok", None
        else:
            hop.outcome = "fail"
            hop.notes.append("status %d" % result.status)
        if hop.outcome == "ok":
            self.sim.last_seen[(hop.group, hop.key)] = hop.result
        self._done(now)

    def _finish_write(self, hop, instance, result, now, node, retry):
        status = kv.decode_result(result).status
        if status in (kv.STALE, kv.SESSION_UNKNOWN) and retry:
            # A retry of a command an earlier attempt may have applied (the session moved past it, or was
            # forgotten): this attempt applied nothing, the earlier one may have. Unknown; the log decides.
            hop.notes.append("refused retry (%d)" % status)
            return
        hop.complete = now
        hop.node = node
        self.sim.on_acknowledged(hop, instance, status)
        if status == kv.OK or (hop.payload is not None and status == kv.ERROR):
            # (a user state machine's ERROR is the outcome of its apply: applied, and answered)
            hop.outcome = "ok"
            hop.result = True if hop.kind == "cas" else None
            self.sim.last_seen[(hop.group, hop.key)] = hop.value
        elif status == kv.CAS_FAILED and hop.kind == "cas":
            hop.outcome = "ok"
            hop.result = False
            hop.observed = kv.decode_result(result).value
        else:
            # STALE (or any other refusal) for an operation this client is still waiting for: nothing was
            # applied. The simulator treats it as a violation (its clients never send an old request).
            hop.outcome = "fail"
            hop.notes.append("status %d" % status)

    def _finish_unknown(self, now, why):
        op = self.op
        for hop in op.ops:
            if hop.outcome == "unknown":
                hop.notes.append(why)
                if hop.kind == "read":
                    hop.outcome = "fail"        # a read that never answered tells nothing
        self._done(now)

    def _done(self, now):
        op = self.op
        op.done = True
        if op.ops[0].kind != "read" and any(h.outcome != "ok" for h in op.ops):
            # As the Client's session pool: a session goes on only after a success. After an unknown outcome
            # an attempt of it may still land; a later request of the same session could then be refused
            # SESSION_UNKNOWN ahead of it and applied after it by a duplicate of itself.
            self.client_id = self.rng.getrandbits(62) + 1
            self.seq = 0
        self.op = None
        self.sim.client_idle(self, now)
