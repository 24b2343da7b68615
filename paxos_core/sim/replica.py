"""The replica layer of one simulated node: master table, KV state machine and applier, as a worker runs them.

Client operations are routed as the worker routes them: the master (by the log) proposes them stamped with
its epoch, a node that knows another live master redirects, a node that knows none claims mastership and
holds the operation until the claim is decided. The state machine lives in memory: a crash loses it and a
restart rebuilds it by replaying the node's log, exactly what a worker does when its state machine is
behind its log.
"""
from ..replica import envelope
from ..replica.applier import Applier
from ..replica.master import MasterTable
from ..statemachine import kv
from ..statemachine.store import MemoryStore


class ClientOp:
    """One client put: unique key and value, a session id and sequence number (kept across retries)."""

    __slots__ = ("group", "key", "value", "client_id", "seq", "hops", "payload", "probe", "seq_e", "min_epoch",
                 "proposed_tick")

    def __init__(self, group, key, value, client_id, seq, probe=False):
        self.group = group
        self.key = key
        self.value = value
        self.client_id = client_id
        self.seq = seq
        self.hops = 0
        self.payload = None
        self.probe = probe
        self.seq_e = None
        self.min_epoch = 0        # the highest master epoch a redirect told the client about
        self.proposed_tick = 0


class SimReplica:
    def __init__(self, node_id, n_groups, lease_ticks, margin, plant="", nonce_base=0):
        self.node_id = node_id
        self.masters = MasterTable(node_id, n_groups, lease_ticks, margin, plant=plant, nonce_base=nonce_base)
        self.store = MemoryStore()
        self.sm = kv.KVStateMachine(self.store)
        self.applier = Applier(node_id, self.sm, self.masters, self.store, lambda g: g, plant=plant)
        self.pending = {}          # (group, engine seq) -> ClientOp
        self.parked = {}           # group -> [ClientOp]
        self.last_activity = {}    # group -> tick
        self.lease_ticks = lease_ticks

    def replay(self, entries_by_group, now):
        """Rebuild the state machine and master table from the chosen values in the node's log."""
        for group, entries in entries_by_group.items():
            if entries:
                self.applier.apply([(group, i, v) for i, _, v in entries], now)
        self.sm.flush()

    def client_payload(self, op):
        slot = op.group
        return envelope.client(int(self.masters.epoch[slot]), op.client_id, op.seq, kv.encode_put(op.key, op.value))

    def has_lease(self, group, now):
        return self.masters.has_lease(group, now)

    def read(self, group, key):
        status, value = kv.decode_result(self.sm.read(group, kv.encode_get(key)))
        return value if status == kv.OK else None
