"""A small lock service with leases and fencing tokens, as a state machine of your own on paxos-core.

    node = paxos_core.Node("cluster/node1.toml", state_machine="locks:LockTable")
    locks = LockClient(node.sm, group=0)
    grant = locks.acquire("db-migration", owner="worker-7", now=1000, ttl=300)
    # {"granted": true, "owner": "worker-7", "token": 1, "expires": 1300, "seq": 1}
    locks.release("db-migration", owner="worker-7", token=grant["token"], now=1100)

Time. A state machine must be deterministic, so ``apply`` never reads a clock: every command carries the
caller's ``now`` (any unit: milliseconds of its wall clock, a logical counter). The group keeps ``clock``,
the largest ``now`` it has applied, and judges expiry against ``max(now, clock)``: time never runs backwards
in the log, and a caller whose clock is behind cannot revive a lease that already ran out for everybody else.
Callers' clocks only need to be roughly in step for leases to last about ``ttl``; safety does not depend on it.

A holder that acquires again (before it is taken over) renews: same token, later expiry. Each new holder gets
a larger fencing token: pass it to the resource you protect, which refuses tokens older than the newest it
has seen. Every command's result has ``seq``, its position among the group's lock commands (the log's order),
which lets a checker reconstruct the order of grants and releases.
"""
import json

from paxos_core.statemachine.user import UserStateMachine

LOCKS = b"lock/"
CLOCK = b"clock"
SEQ = b"seq"


class LockError(Exception):
    pass


def _text(request, field):
    value = request.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise LockError("%s must be a string of 1 to 200 characters" % field)
    return value


def _number(request, field, lo=0):
    value = request.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise LockError("%s must be an integer >= %d, got %r" % (field, lo, value))
    return value


class LockTable(UserStateMachine):
    """Commands ``acquire``, ``release``; query ``holder``. See the module docstring."""

    def _next_seq(self, group):
        seq = int(self.get(group, SEQ) or b"0") + 1
        self.put(group, SEQ, b"%d" % seq)
        return seq

    def _now(self, group, request):
        now = max(_number(request, "now"), int(self.get(group, CLOCK) or b"0"))
        self.put(group, CLOCK, b"%d" % now)
        return now

    def apply(self, group, instance, op):
        request = json.loads(op)
        if not isinstance(request, dict):
            raise LockError("a command is a JSON object")
        kind = request.get("op")
        name, owner = _text(request, "lock"), _text(request, "owner")
        key = LOCKS + name.encode()
        raw = self.get(group, key)
        lock = json.loads(raw) if raw is not None else {"owner": None, "expires": 0, "token": 0}
        if kind == "acquire":
            now = self._now(group, request)
            ttl = _number(request, "ttl", lo=1)
            free = lock["owner"] is None or lock["expires"] <= now
            if free or lock["owner"] == owner:
                token = lock["token"] if not free else lock["token"] + 1
                lock = {"owner": owner, "expires": now + ttl, "token": token}
                self.put(group, key, json.dumps(lock, sort_keys=True).encode())
                result = dict(lock, granted=True)
            else:
                result = dict(lock, granted=False)
        elif kind == "release":
            now = self._now(group, request)
            token = _number(request, "token", lo=1)
            held = lock["owner"] == owner and lock["token"] == token and lock["expires"] > now
            if held:
                lock = {"owner": None, "expires": 0, "token": lock["token"]}
                self.put(group, key, json.dumps(lock, sort_keys=True).encode())
            result = {"released": held, "token": token}
        else:
            raise LockError("unknown command %r" % (kind,))
        result["seq"] = self._next_seq(group)
        return json.dumps(result, sort_keys=True).encode()

    def query(self, group, query):
        request = json.loads(query)
        name = _text(request, "lock")
        now = max(_number(request, "now"), int(self.get(group, CLOCK) or b"0"))
        raw = self.get(group, LOCKS + name.encode())
        lock = json.loads(raw) if raw is not None else None
        if lock is None or lock["owner"] is None or lock["expires"] <= now:
            return json.dumps({"owner": None, "token": lock["token"] if lock else 0}).encode()
        return json.dumps(lock, sort_keys=True).encode()

    def random_command(self, rng, group):
        request = {"op": rng.choice(("acquire", "acquire", "release")), "lock": "L%d" % rng.randrange(2),
                   "owner": "o%d" % rng.randrange(3), "now": rng.randrange(0, 2000), "ttl": rng.randint(1, 300),
                   "token": rng.randint(1, 5)}
        return json.dumps(request, sort_keys=True).encode()

    def random_query(self, rng, group):
        return json.dumps({"lock": "L%d" % rng.randrange(2), "now": rng.randrange(0, 2000)}).encode()


class LockClient:
    """The lock table of one group, over a StateMachineClient (``node.sm``)."""

    def __init__(self, sm, group=0):
        self.sm = sm
        self.group = group

    def _call(self, request):
        return json.loads(self.sm.call(self.group, json.dumps(request, sort_keys=True).encode()))

    def acquire(self, lock, owner, now, ttl):
        return self._call({"op": "acquire", "lock": lock, "owner": owner, "now": now, "ttl": ttl})

    def release(self, lock, owner, token, now):
        return self._call({"op": "release", "lock": lock, "owner": owner, "token": token, "now": now})

    def holder(self, lock, now, mode="lease"):
        return json.loads(self.sm.query(self.group, json.dumps({"lock": lock, "now": now}).encode(), mode))
