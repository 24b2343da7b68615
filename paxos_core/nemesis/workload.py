"""Client tasks that run put / get / cas on a few keys and record every operation.

Each task is a thread with a Client of its own that prefers a different node (task i: node i mod n; when that
node leaves the cluster, the current member i mod n, so a task does not wait on a node that is gone). Every
written value is unique (``c<task>-<n>``). An operation is recorded as a :class:`paxos_core.check.Op`: invoke
and complete on ONE monotonic clock (``time.monotonic`` of this process), outcome

* ``ok``: an answer came back;
* ``fail``: an error that says nothing was applied (StaleRequest, GroupStopped, UnknownGroupError, Overloaded,
  BadRequest, ValueTooLarge, NotMaster: the Client raises these only when no earlier attempt of the request
  may have been proposed, else a Timeout), or any error of a read;
* ``unknown``: a Timeout (SessionExpired included), or any other error of a write: it may take effect at any
  time after its invocation, or never.

Reads use the modes given; a lease or linearizable read is sent first to a random node (which redirects it
to the master); a stale-mode read goes to the task's own node and is marked ``stale`` (it is only checked to
return some value that was written, as the simulator checks them). Half the tasks wait long for an
answer (an attempt timeout longer than a pause), so requests queued at a paused or cut-off master are answered
by it when it comes back, which is where a stale lease shows.
"""
import random
import threading
import time

from .. import errors
from ..check import Op
from ..client import Client
from ..kv import _write_result, key_group
from ..statemachine import kv as kv_ops

FAIL_ERRORS = (errors.StaleRequest, errors.GroupStopped, errors.UnknownGroupError, errors.Overloaded,
               errors.BadRequest, errors.ValueTooLarge, errors.NotMaster)
OP_TIMEOUT = 8.0


def key_name(k):
    return b"k%d" % k


class History:
    """The operations of a run, appended from many threads."""

    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.ids = 0
        self.unexpected = {}           # error class name -> count (errors of writes taken as unknown)

    def next_id(self):
        with self.lock:
            self.ids += 1
            return self.ids

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def note_unexpected(self, exc):
        with self.lock:
            name = type(exc).__name__
            self.unexpected[name] = self.unexpected.get(name, 0) + 1


def _classify(exc, is_read):
    if isinstance(exc, errors.Timeout):
        return "unknown"
    if is_read or isinstance(exc, FAIL_ERRORS):
        return "fail"
    return "unknown"


def do_op(client, groups, history, task, kind, key, *, value=None, expected=None, mode="linearizable",
          node=None, timeout=OP_TIMEOUT, clock=time.monotonic):
    """Run one operation and record it; returns the Op."""
    group = key_group(key, groups)
    op = Op(history.next_id(), key, kind, value=value, expected=expected, client=task,
            stale=(kind == "read" and mode == "stale"))
    op.mode = mode if kind == "read" else None
    op.invoke = clock()
    try:
        if kind == "read":
            query = kv_ops.encode_get(key)
            raw = (client.read_stale(group, query, node=node, timeout=timeout) if mode == "stale"
                   else client.read(group, query, mode, timeout, node))
            status, result = kv_ops.decode_result(raw)
            if status not in (kv_ops.OK, kv_ops.NOT_FOUND):
                raise errors.PaxosError("read status %d" % status)
            op.result = result if status == kv_ops.OK else None
        elif kind == "write":
            _write_result(group, client.propose(group, kv_ops.encode_put(key, value), timeout))
        else:
            status, seen = _write_result(group, client.propose(group, kv_ops.encode_cas(key, expected, value),
                                                               timeout))
            if status == kv_ops.OK:
                op.result = True
            elif status == kv_ops.CAS_FAILED:
                op.result = False
                op.observed = seen
            else:
                raise errors.PaxosError("cas status %d" % status)
        op.complete = clock()
        op.outcome = "ok"
    except errors.PaxosError as exc:
        op.complete = None
        op.outcome = _classify(exc, kind == "read")
        if op.outcome == "unknown" and not isinstance(exc, errors.Timeout):
            history.note_unexpected(exc)
        op.error = type(exc).__name__
    history.add(op)
    return op


class Workload:
    def __init__(self, endpoints, workers, groups, history, *, clients=5, keys=4, read_modes=("lease",),
                 seed=0, node_ids=(1, 2, 3), writes=0.55, client_options=None, members=None):
        self.endpoints = endpoints
        self.client_options = dict(client_options or {})     # e.g. the cluster's CURVE server keys
        self.workers = workers
        self.groups = groups
        self.history = history
        self.clients = clients
        self.keys = [key_name(k) for k in range(keys)]
        self.read_modes = tuple(read_modes)
        self.seed = seed
        self.node_ids = list(node_ids)
        # () -> the current members' ids (the member nemesis changes them); by default the fixed node_ids
        self.members = members or (lambda: self.node_ids)
        self.writes = writes              # the fraction of operations that write (2/3 put, 1/3 cas)
        self.stop = threading.Event()
        self.threads = []

    def start(self):
        for task in range(self.clients):
            t = threading.Thread(target=self._task, args=(task,), name="nemesis-client-%d" % task, daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self, timeout=OP_TIMEOUT + 5):
        self.stop.set()
        for t in self.threads:
            t.join(timeout)

    def _task(self, task):
        rng = random.Random((self.seed << 8) + task)
        node = self.node_ids[task % len(self.node_ids)]
        patient = task % 2 == 1
        client = Client(self.endpoints, self.workers, self.groups, prefer=node, default_timeout=OP_TIMEOUT,
                        attempt_timeout=6.0 if patient else 1.0, **self.client_options)
        last = {}                      # key -> the last value this task saw or wrote (cas expects it)
        n = 0
        try:
            while not self.stop.is_set():
                current = sorted(self.members())
                if node not in current:
                    node = current[task % len(current)]
                    client.prefer = node
                key = rng.choice(self.keys)
                roll = rng.random()
                if roll >= self.writes:
                    mode = rng.choice(self.read_modes)
                    # A read's first attempt goes to a random member (a stale read: to the task's own node),
                    # which redirects it to the master if it is not: clients are spread over the nodes.
                    to = node if mode == "stale" else rng.choice(current)
                    op = do_op(client, self.groups, self.history, task, "read", key, mode=mode, node=to)
                    if op.outcome == "ok":
                        last[key] = op.result
                else:
                    n += 1
                    value = b"c%d-%d" % (task, n)
                    if roll < self.writes * 2 / 3:
                        op = do_op(client, self.groups, self.history, task, "write", key, value=value)
                    else:
                        op = do_op(client, self.groups, self.history, task, "cas", key, value=value,
                                   expected=last.get(key))
                        if op.outcome == "ok" and op.result is False:
                            last[key] = op.observed
                            continue
                    if op.outcome == "ok":
                        last[key] = value
                time.sleep(rng.uniform(0.0, 0.02))
        finally:
            client.close()
