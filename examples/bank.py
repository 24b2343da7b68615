"""A replicated bank ledger: accounts and transfers, a state machine of your own on paxos-core.

Each group is one ledger. Money is conserved (a transfer moves it, nothing else creates or destroys it but
`open`, which brings an account's opening balance) and no balance goes negative: a transfer that would is
refused, deterministically, on every node.

Run a cluster whose nodes use it (every node the same; the module must be importable by the node's process,
e.g. run from this directory or put it on PYTHONPATH). Create the Node in a script of your own or under
`if __name__ == "__main__":`, never at the top level of this module: every worker imports it to load
bank:Ledger, and would start a second node.

    node = paxos_core.Node("cluster/node1.toml", state_machine="bank:Ledger")
    bank = BankClient(node.sm, group=0)
    bank.open("alice", 100); bank.open("bob", 0)
    bank.transfer("alice", "bob", 30)            # {"alice": 70, "bob": 30}
    bank.transfer("bob", "alice", 500)           # raises CommandError("InsufficientFunds: ...")
    bank.balance("alice")                        # 70 (a lease read)

Commands and queries are JSON; balances are stored as decimal strings under "acct/<name>".
"""
import json

from paxos_core import CommandError
from paxos_core.statemachine.user import UserStateMachine

ACCOUNTS = b"acct/"
MAX_NAME = 64


class LedgerError(Exception):
    """Base of the ledger's refusals (each reaches the caller as CommandError with its class name)."""


class InsufficientFunds(LedgerError):
    pass


class UnknownAccount(LedgerError):
    pass


class BadRequest(LedgerError):
    pass


def _name(value):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise BadRequest("an account name is a string of 1 to %d characters" % MAX_NAME)
    return value


def _amount(value, allow_zero=False):
    # bool is an int in Python: refuse it, so that true/false are never money.
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise BadRequest("an amount is an integer %s 0, got %r" % (">=" if allow_zero else ">", value))
    return value


class Ledger(UserStateMachine):
    """The state machine: ``open``, ``transfer`` commands; ``balance``, ``total``, ``accounts`` queries."""

    def _balance(self, group, name):
        raw = self.get(group, ACCOUNTS + name.encode())
        if raw is None:
            raise UnknownAccount("no account %r" % name)
        return int(raw)

    def apply(self, group, instance, op):
        request = json.loads(op)
        if not isinstance(request, dict):
            raise BadRequest("a command is a JSON object")
        kind = request.get("op")
        if kind == "open":
            name = _name(request.get("account"))
            amount = _amount(request.get("amount", 0), allow_zero=True)
            key = ACCOUNTS + name.encode()
            if self.get(group, key) is not None:
                raise BadRequest("account %r exists" % name)
            self.put(group, key, b"%d" % amount)
            return json.dumps({name: amount}).encode()
        if kind == "transfer":
            source, dest = _name(request.get("from")), _name(request.get("to"))
            amount = _amount(request.get("amount"))
            if source == dest:
                raise BadRequest("a transfer needs two different accounts")
            have, other = self._balance(group, source), self._balance(group, dest)
            if have < amount:
                raise InsufficientFunds("%r has %d, cannot send %d" % (source, have, amount))
            self.put(group, ACCOUNTS + source.encode(), b"%d" % (have - amount))
            self.put(group, ACCOUNTS + dest.encode(), b"%d" % (other + amount))
            return json.dumps({source: have - amount, dest: other + amount}, sort_keys=True).encode()
        raise BadRequest("unknown command %r" % (kind,))

    def query(self, group, query):
        request = json.loads(query)
        kind = request.get("q") if isinstance(request, dict) else None
        if kind == "balance":
            return b"%d" % self._balance(group, _name(request.get("account")))
        if kind == "accounts":
            return json.dumps({k[len(ACCOUNTS):].decode(): int(v) for k, v in self.scan(group, ACCOUNTS)}).encode()
        if kind == "total":
            return b"%d" % sum(int(v) for _, v in self.scan(group, ACCOUNTS))
        raise BadRequest("unknown query %r" % (kind,))

    # For `paxos-core sim --state-machine bank:Ledger`: what its clients send (from the rng only).
    def random_command(self, rng, group):
        names = ["a%d" % k for k in range(4)]
        if rng.random() < 0.2:
            return json.dumps({"op": "open", "account": rng.choice(names), "amount": rng.randint(0, 100)}).encode()
        return json.dumps({"op": "transfer", "from": rng.choice(names), "to": rng.choice(names),
                           "amount": rng.randint(1, 60)}).encode()

    def random_query(self, rng, group):
        return json.dumps({"q": rng.choice(("total", "accounts"))}).encode()


class BankClient:
    """The ledger of one group, over a StateMachineClient (``node.sm``)."""

    def __init__(self, sm, group=0):
        self.sm = sm
        self.group = group

    def _call(self, command, **kw):
        return json.loads(self.sm.call(self.group, json.dumps(command).encode(), **kw))

    def open(self, account, amount=0, **kw):
        return self._call({"op": "open", "account": account, "amount": amount}, **kw)

    def transfer(self, source, dest, amount, **kw):
        """The two new balances; CommandError("InsufficientFunds: ...", "UnknownAccount: ...") if refused."""
        return self._call({"op": "transfer", "from": source, "to": dest, "amount": amount}, **kw)

    def balance(self, account, mode="lease"):
        return int(self.sm.query(self.group, json.dumps({"q": "balance", "account": account}).encode(), mode))

    def accounts(self, mode="lease"):
        return json.loads(self.sm.query(self.group, b'{"q": "accounts"}', mode))

    def total(self, mode="lease"):
        return int(self.sm.query(self.group, b'{"q": "total"}', mode))


__all__ = ["Ledger", "BankClient", "CommandError", "InsufficientFunds", "UnknownAccount", "BadRequest"]
