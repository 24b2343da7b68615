"""The system group's state machine (issue 14, step 4; docs/design/membership.md): the cluster's node table
and its epochs.

One group of the cluster (the system group) replicates this state; it is the truth about membership once the
cluster is seeded (the TOML node list only seeds epoch 1). Every change makes a new epoch, in the order the
system group's log chose them, and is checked against the epoch its caller expected (compare-and-set), so of
two concurrent changes made against the same epoch exactly one wins and the other gets EPOCH_CONFLICT. The
data groups adopt the voters of an epoch through their own logs (an ADOPT value, core/voters.pyx).

State, as keys of the group's data (JSON values, written with sorted keys so every node stores the same
bytes):

    m              {"epoch", "alpha", "next_id"}: the current epoch, the cluster's alpha, the next node id
    n/<id:05d>     a node: {"id", "host", "peer_port", "client_port", "public_key", "role", "replaces"}
                   role: "voter", "learner" or "removed"; removed nodes stay, so an id is never reused and a
                   removed node's key is never accepted again; a node that stopped being a voter also has
                   "voter_until", the last epoch it was one (a leaving node's handover waits for it)
    e/<epoch:020d> an epoch: {"epoch", "voters", "learners", "change"}, the history
    p/<group:010d> a group's placement: the list of its voters, where they are not the cluster's voters

Commands are JSON objects (`encode_change` builds them). Each is idempotent: one whose outcome already holds
(the node already added with that key and address, already promoted, removed, swapped, at that address)
succeeds with "changed": false and the current epoch, whatever epoch it expected, so the command that drove
a change can simply be run again after its driver died. Otherwise a command whose "expect" is not the current
epoch fails with EPOCH_CONFLICT and changes nothing.

    seed     {"alpha", "nodes": [{"id", "host", "peer_port", "client_port", "public_key", "role"?}, ...]}:
             epoch 1, each node a voter (or a learner: "role": "learner"; at least one voter); on a seeded
             table a no-op (alpha must match)
    add      {"host", "peer_port", "client_port", "public_key", "replaces"?}: a new id, as a learner. The
             address may be that of node `replaces` (a dead node to be swapped out), no other's.
    promote  {"id"}: a learner becomes a voter
    remove   {"id"}: a voter or learner is removed (never the last voter)
    swap     {"old", "new"}: in one epoch, learner `new` becomes a voter and voter `old` is removed
    update   {"id", "host", "peer_port", "client_port"}: a node's address changes
    place    {"group", "voters"}: the group's voters are these nodes (1 to 7 of the cluster's voters and
             learners), not the cluster's; "voters": null gives the group back to the cluster's voters.
             A node named by a placement cannot be removed (move its groups first); a swap moves its
             placements to the new node.

Results are JSON: {"ok": true, "epoch", "changed", "id"?} or {"ok": false, "error", "message", "epoch"}, with
error one of EPOCH_CONFLICT, NOT_SEEDED, NOT_FOUND, INVALID. What a result cannot know (is the learner caught
up? would the change leave a live quorum?) the node that drives the change checks before it proposes.
"""
from __future__ import annotations

import json

from .user import UserStateMachine

MAX_VOTERS = 7                      # a group's configuration has at most 7 voters (core/voters.pyx)
MAX_SEED_NODES = 63                 # a seed's nodes, voters and learners (the engine's member limit)
MAX_NODE_ID = 0xFFFE                # as config.py: ballots keep a node id in 16 bits, 0xFFFF reserved
ROLES = ("voter", "learner", "removed")

EPOCH_CONFLICT = "EPOCH_CONFLICT"
NOT_SEEDED = "NOT_SEEDED"
NOT_FOUND = "NOT_FOUND"
INVALID = "INVALID"

_META = b"m"
_NODE = b"n/"
_EPOCH = b"e/"
_PLACE = b"p/"


def _dump(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def encode_change(op: str, expect: int | None = None, **fields) -> bytes:
    """A command for the system group: `op` with its fields, against epoch `expect` (None: no check)."""
    return _dump(dict(fields, op=op, expect=expect))


def decode_result(result: bytes) -> dict:
    return json.loads(result)


class _Refused(Exception):
    def __init__(self, error, message):
        super().__init__(message)
        self.error = error


def _need(cond, message, error=INVALID):
    if not cond:
        raise _Refused(error, message)


def _port(value, name):
    _need(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535,
          "%s must be a port number 1-65535, got %r" % (name, value))
    return value


def _text(value, name, limit=255):
    _need(isinstance(value, str) and 0 < len(value) <= limit and value.isprintable() and " " not in value,
          "%s must be a non-empty printable string without spaces, at most %d characters, got %r"
          % (name, limit, value))
    return value


def _node_id(value, name="id"):
    _need(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_NODE_ID,
          "%s must be a node id 1-%d, got %r" % (name, MAX_NODE_ID, value))
    return value


class MembershipStateMachine(UserStateMachine):
    """The node table and epochs of the system group (see the module docstring)."""

    # ------------------------------------------------------------------ reading the table

    def _meta(self, group):
        raw = self.get(group, _META)
        return json.loads(raw) if raw is not None else None

    def _node(self, group, node_id):
        raw = self.get(group, _NODE + b"%05d" % node_id)
        return json.loads(raw) if raw is not None else None

    def _nodes(self, group):
        return [json.loads(v) for _, v in self.scan(group, _NODE)]

    def table(self, group: int) -> dict:
        """The whole table: epoch, alpha, next id, nodes, voters and learners (empty before the seed)."""
        meta = self._meta(group)
        if meta is None:
            return {"epoch": 0, "alpha": 0, "next_id": 1, "nodes": [], "voters": [], "learners": []}
        nodes = self._nodes(group)
        return dict(meta, nodes=nodes,
                    voters=[n["id"] for n in nodes if n["role"] == "voter"],
                    learners=[n["id"] for n in nodes if n["role"] == "learner"],
                    placements=self._placements(group))

    def _placements(self, group):
        """{group id (decimal text, as JSON keys are): [voters]} of the groups placed apart from the cluster's voters."""
        return {str(int(k[len(_PLACE):])): json.loads(v) for k, v in self.scan(group, _PLACE)}

    def query(self, group: int, query: bytes) -> bytes:
        """b"table": the table as JSON; b"history": every epoch, oldest first."""
        if query == b"table":
            return _dump(self.table(group))
        if query == b"history":
            return _dump([json.loads(v) for _, v in self.scan(group, _EPOCH)])
        raise ValueError("unknown membership query %r (b'table' or b'history')" % (query[:40],))

    # ------------------------------------------------------------------ applying a change

    def apply(self, group: int, instance: int, op: bytes) -> bytes:
        meta = self._meta(group)
        epoch = meta["epoch"] if meta else 0
        try:
            try:
                change = json.loads(op)
            except (ValueError, UnicodeDecodeError):
                raise _Refused(INVALID, "a membership command is a JSON object")
            _need(isinstance(change, dict), "a membership command is a JSON object")
            kind = change.get("op")
            handler = getattr(self, "_do_" + kind, None) if isinstance(kind, str) and kind.isidentifier() else None
            _need(handler is not None, "unknown membership operation %r" % (kind,))
            expect = change.get("expect")
            _need(expect is None or (isinstance(expect, int) and not isinstance(expect, bool) and expect >= 0),
                  "expect must be an epoch number or null, got %r" % (expect,))
            if kind != "seed":
                _need(meta is not None, "the membership table is not seeded yet", NOT_SEEDED)
            return _dump(handler(group, meta, change, expect))
        except _Refused as refused:
            return _dump({"ok": False, "error": refused.error, "message": str(refused), "epoch": epoch})

    def _check_expect(self, meta, expect):
        if expect is not None and expect != meta["epoch"]:
            raise _Refused(EPOCH_CONFLICT, "the change expected epoch %d, the table is at epoch %d"
                           % (expect, meta["epoch"]))

    def _unchanged(self, meta, **extra):
        return dict(extra, ok=True, changed=False, epoch=meta["epoch"])

    def _commit(self, group, meta, nodes, change, **extra):
        """Write the changed nodes and a new epoch."""
        table = {n["id"]: n for n in self._nodes(group)}
        # A voter that stops being one keeps the last epoch it voted in (`voter_until`): a group may still
        # choose an ADOPT of that epoch which counts it, until its configuration's epoch reaches it (rule R5), and
        # a node leaving the cluster hands its groups over only then (MembershipDriver._leave).
        nodes = [dict(n, voter_until=meta["epoch"]) if table.get(n["id"], {}).get("role") == "voter"
                 and n["role"] != "voter" else n for n in nodes]
        table.update({n["id"]: n for n in nodes})
        voters = sorted(i for i, n in table.items() if n["role"] == "voter")
        learners = sorted(i for i, n in table.items() if n["role"] == "learner")
        _need(1 <= len(voters) <= MAX_VOTERS, "the change would leave %d voters (1 to %d)" % (len(voters), MAX_VOTERS))
        # Checked: only now is anything written (a refused command changes nothing).
        meta = dict(meta, epoch=meta["epoch"] + 1)
        for node in nodes:
            self.put(group, _NODE + b"%05d" % node["id"], _dump(node))
        self.put(group, _META, _dump(meta))
        self.put(group, _EPOCH + b"%020d" % meta["epoch"],
                 _dump({"epoch": meta["epoch"], "voters": voters, "learners": learners, "change": change}))
        return dict(extra, ok=True, changed=True, epoch=meta["epoch"])

    def _address_clash(self, group, host, peer_port, client_port, allowed=()):
        for other in self._nodes(group):
            if other["role"] == "removed" or other["id"] in allowed:
                continue
            if other["host"] == host and {peer_port, client_port} & {other["peer_port"], other["client_port"]}:
                return other["id"]
        return None

    def _address(self, change):
        host = _text(change.get("host"), "host")
        peer_port = _port(change.get("peer_port"), "peer_port")
        client_port = _port(change.get("client_port"), "client_port")
        _need(peer_port != client_port, "peer_port and client_port must differ")
        return host, peer_port, client_port

    def _do_seed(self, group, meta, change, expect):
        alpha = change.get("alpha")
        _need(isinstance(alpha, int) and not isinstance(alpha, bool) and 1 <= alpha <= 1 << 16,
              "alpha must be 1 to 65536, got %r" % (alpha,))
        nodes = change.get("nodes")
        _need(isinstance(nodes, list) and 1 <= len(nodes) <= MAX_SEED_NODES,
              "a seed names 1 to %d nodes" % MAX_SEED_NODES)
        seeded = []
        for spec in nodes:
            _need(isinstance(spec, dict), "a seed's nodes are JSON objects")
            host, peer_port, client_port = self._address(spec)
            role = spec.get("role", "voter")
            _need(role in ("voter", "learner"), "a seeded node is a voter or a learner, not %r" % (role,))
            seeded.append({"id": _node_id(spec.get("id")), "host": host, "peer_port": peer_port,
                           "client_port": client_port, "public_key": _text(spec.get("public_key", "-"), "public_key"),
                           "role": role, "replaces": 0})
        seeded.sort(key=lambda n: n["id"])
        _need(len({n["id"] for n in seeded}) == len(seeded), "a node id appears twice in the seed")
        if meta is not None:
            # Seeded before: the TOML node list only seeds epoch 1, and every node proposes its seed at start,
            # so a later one is a no-op. Whether the table still matches the node's file is for `status`.
            _need(meta["alpha"] == alpha, "the table is seeded with alpha %d, not %d" % (meta["alpha"], alpha))
            return self._unchanged(meta)
        meta = {"epoch": 0, "alpha": alpha, "next_id": seeded[-1]["id"] + 1}
        return self._commit(group, meta, seeded, {"op": "seed"})

    def _do_add(self, group, meta, change, expect):
        host, peer_port, client_port = self._address(change)
        key = _text(change.get("public_key"), "public_key")
        replaces = change.get("replaces") or 0
        if replaces:
            _node_id(replaces, "replaces")
        for node in self._nodes(group):
            if node["public_key"] == key:
                _need(node["role"] != "removed",
                      "that public key belonged to node %d, which was removed: a new node needs a new key" % node["id"])
                _need((node["host"], node["peer_port"], node["client_port"], node["replaces"])
                      == (host, peer_port, client_port, replaces),
                      "that public key is node %d's, at another address" % node["id"])
                return self._unchanged(meta, id=node["id"])        # added before: the same command again
        if replaces:
            old = self._node(group, replaces)
            _need(old is not None and old["role"] == "voter", "node %d is not a voter to replace" % replaces,
                  NOT_FOUND if old is None else INVALID)
        clash = self._address_clash(group, host, peer_port, client_port, allowed=(replaces,))
        _need(clash is None, "node %d already uses %s with one of those ports" % (clash or 0, host))
        self._check_expect(meta, expect)
        new_id = meta["next_id"]
        _need(new_id <= MAX_NODE_ID, "no node ids left")
        node = {"id": new_id, "host": host, "peer_port": peer_port, "client_port": client_port,
                "public_key": key, "role": "learner", "replaces": replaces}
        return self._commit(group, dict(meta, next_id=new_id + 1), [node], {"op": "add", "id": new_id}, id=new_id)

    def _existing(self, group, change, name="id"):
        node_id = _node_id(change.get(name), name)
        node = self._node(group, node_id)
        _need(node is not None, "there is no node %d" % node_id, NOT_FOUND)
        return node

    def _do_promote(self, group, meta, change, expect):
        node = self._existing(group, change)
        if node["role"] == "voter":
            return self._unchanged(meta, id=node["id"])
        _need(node["role"] == "learner", "node %d was removed" % node["id"])
        self._check_expect(meta, expect)
        return self._commit(group, meta, [dict(node, role="voter")], {"op": "promote", "id": node["id"]},
                            id=node["id"])

    def _do_remove(self, group, meta, change, expect):
        node = self._existing(group, change)
        if node["role"] == "removed":
            return self._unchanged(meta, id=node["id"])
        placed = sorted(int(g) for g, voters in self._placements(group).items() if node["id"] in voters)
        _need(not placed, "node %d votes in group(s) %s by placement: move them first" % (node["id"], placed[:10]))
        self._check_expect(meta, expect)
        return self._commit(group, meta, [dict(node, role="removed")], {"op": "remove", "id": node["id"]},
                            id=node["id"])

    def _do_swap(self, group, meta, change, expect):
        old = self._existing(group, change, "old")
        new = self._existing(group, change, "new")
        _need(old["id"] != new["id"], "a node cannot replace itself")
        if old["role"] == "removed" and new["role"] == "voter":
            return self._unchanged(meta, id=new["id"])
        _need(old["role"] == "voter", "node %d is not a voter" % old["id"])
        _need(new["role"] == "learner", "node %d is not a learner" % new["id"])
        placements = self._placements(group)
        both = sorted(int(g) for g, voters in placements.items() if old["id"] in voters and new["id"] in voters)
        _need(not both, "node %d votes in group(s) %s beside node %d already (the swap would leave them a voter "
                        "short): move them first" % (new["id"], both[:10], old["id"]))
        self._check_expect(meta, expect)
        for g, voters in placements.items():
            if old["id"] in voters:               # the new node takes the old one's place in every group
                self.put(group, _PLACE + b"%010d" % int(g), _dump(sorted(new["id"] if v == old["id"] else v
                                                                         for v in voters)))
        return self._commit(group, meta, [dict(old, role="removed"), dict(new, role="voter")],
                            {"op": "swap", "old": old["id"], "new": new["id"]}, id=new["id"])

    def _do_update(self, group, meta, change, expect):
        node = self._existing(group, change)
        _need(node["role"] != "removed", "node %d was removed" % node["id"])
        host, peer_port, client_port = self._address(change)
        if (node["host"], node["peer_port"], node["client_port"]) == (host, peer_port, client_port):
            return self._unchanged(meta, id=node["id"])
        clash = self._address_clash(group, host, peer_port, client_port, allowed=(node["id"],))
        _need(clash is None, "node %d already uses %s with one of those ports" % (clash or 0, host))
        self._check_expect(meta, expect)
        moved = dict(node, host=host, peer_port=peer_port, client_port=client_port)
        return self._commit(group, meta, [moved], {"op": "update", "id": node["id"]}, id=node["id"])

    def _do_place(self, group, meta, change, expect):
        target = change.get("group")
        _need(isinstance(target, int) and not isinstance(target, bool) and 0 <= target < 0xFFFFFFFE,
              "group must be a data group id, got %r" % (target,))
        key = _PLACE + b"%010d" % target
        raw = self.get(group, key)
        current = json.loads(raw) if raw is not None else None
        voters = change.get("voters")
        if voters is not None:
            _need(isinstance(voters, list) and 1 <= len(voters) <= MAX_VOTERS
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in voters)
                  and len(set(voters)) == len(voters), "voters must be 1 to %d distinct node ids" % MAX_VOTERS)
            voters = sorted(voters)
            for v in voters:
                node = self._node(group, v)
                _need(node is not None and node["role"] != "removed",
                      "node %d is not one of the cluster's nodes" % v, NOT_FOUND if node is None else INVALID)
        if voters == current:
            return self._unchanged(meta, placed=target)
        self._check_expect(meta, expect)
        if voters is None:
            self.delete(group, key)
        else:
            self.put(group, key, _dump(voters))
        return self._commit(group, meta, [], {"op": "place", "group": target, "voters": voters}, placed=target)
