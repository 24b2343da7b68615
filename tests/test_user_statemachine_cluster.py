"""The example state machines on a real 3-node loopback cluster, each node a `Node` in this process started
with ``state_machine="<module>:<Factory>"`` (its workers find examples/ through the sys.path this process
hands them), invariants checked after concurrent clients on every node. Every process started is stopped,
and checked gone, by pid."""
import asyncio
import itertools
import json
import random
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from cluster_harness import alive, free_base_port, wait_for
from paxos_core import errors
from paxos_core.config import write_cluster
from paxos_core.node import Node

EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")


@contextmanager
def three_nodes(tmp_path, spec, groups=2):
    cluster = tmp_path / "cluster"
    write_cluster(cluster, nodes=3, workers=1, groups=groups, base_port=free_base_port(3, 1))
    nodes, pids = [], set()
    try:
        for k in (1, 2, 3):
            node = Node(cluster / ("node%d.toml" % k), state_machine=spec, ready_timeout=90, default_timeout=30.0)
            nodes.append(node)
            pids.update(node.supervisor.pids().values())
        yield nodes
    finally:
        for node in nodes:
            node.close()
        for pid in pids:
            if not wait_for(lambda: not alive(pid), timeout=20, message="worker %d stopped" % pid):
                pytest.fail("worker %d survived its node's close" % pid)


def run_threads(target, count):
    failures = []

    def body(k):
        try:
            target(k)
        except BaseException as exc:       # reported by the test, not lost in a thread
            failures.append(exc)
    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not failures, failures


def test_bank_ledger_conserves_money_and_never_goes_negative_under_concurrent_transfers(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    import bank

    names = ["acct%d" % k for k in range(4)]
    with three_nodes(tmp_path, "bank:Ledger") as nodes:
        for group in (0, 1):
            ledger = bank.BankClient(nodes[0].sm, group)
            for name in names:
                assert ledger.open(name, 100) == {name: 100}
        with pytest.raises(errors.CommandError, match="^BadRequest: account 'acct0' exists"):
            bank.BankClient(nodes[1].sm, 0).open("acct0", 5)
        outcomes = {"ok": 0, "refused": 0}
        lock = threading.Lock()

        def client(k):
            rng = random.Random(k)
            for _ in range(20):
                ledger = bank.BankClient(nodes[k % 3].sm, rng.randrange(2))       # through every node
                source, dest = rng.sample(names, 2)
                try:
                    new = ledger.transfer(source, dest, rng.randint(1, 80))
                    assert min(new.values()) >= 0
                    kind = "ok"
                except errors.CommandError as exc:
                    assert str(exc).startswith("InsufficientFunds: "), exc
                    kind = "refused"
                with lock:
                    outcomes[kind] += 1
        run_threads(client, 6)
        assert outcomes["ok"] + outcomes["refused"] == 120 and outcomes["ok"] > 0
        for group in (0, 1):
            finals = []
            for node in nodes:
                ledger = bank.BankClient(node.sm, group)
                assert ledger.total("linearizable") == 400
                accounts = ledger.accounts("linearizable")
                assert sorted(accounts) == names and min(accounts.values()) >= 0
                finals.append(accounts)
                # each node's own state, once it has applied everything: the same on every node
                wait_for(lambda: node.client.read_stale(group, b'{"q": "accounts"}', node=node.config.node_id)
                         == b"\x80" + json.dumps(finals[0]).encode(), timeout=20, message="node state converged")
            assert finals[0] == finals[1] == finals[2]
        with pytest.raises(errors.CommandError, match="UnknownAccount"):
            bank.BankClient(nodes[2].sm, 0).transfer("acct0", "nobody", 1)
        # the asyncio facade: the same command and query, awaited
        async def moved():
            await nodes[1].sm.call_async(0, json.dumps({"op": "open", "account": "async", "amount": 0}).encode())
            return await nodes[2].sm.query_async(0, b'{"q": "total"}', mode="linearizable")
        assert asyncio.run(moved()) == b"400"


def _reference_locks(commands):
    """The lock rules, written again independently: the result every command must have had."""
    state, clock, out = {}, 0, []
    for request in commands:
        clock = max(clock, request["now"])
        owner, token, expires = state.get(request["lock"], (None, 0, 0))
        live = owner is not None and expires > clock
        if request["op"] == "acquire":
            if not live or owner == request["owner"]:
                token = token if live else token + 1
                state[request["lock"]] = (request["owner"], token, clock + request["ttl"])
                out.append(("granted", request["owner"], token))
            else:
                out.append(("denied", owner, token))
        else:
            held = live and owner == request["owner"] and token == request["token"]
            if held:
                state[request["lock"]] = (None, token, 0)
            out.append(("released" if held else "not-held", request["owner"], request["token"]))
    return out


def test_lock_service_grants_each_lease_to_one_owner_at_a_time_under_concurrent_clients(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    import locks

    ticks = itertools.count(1)
    tick_lock = threading.Lock()
    log = []                       # (seq, request, result): every command, all acknowledged

    def now():
        with tick_lock:
            return next(ticks)

    with three_nodes(tmp_path, "locks:LockTable", groups=1) as nodes:
        def client(k):
            table = locks.LockClient(nodes[k % 3].sm, 0)
            owner = "owner%d" % k
            for _ in range(12):
                request = {"op": "acquire", "lock": "L", "owner": owner, "now": now(), "ttl": 6}
                grant = table.acquire("L", owner, request["now"], request["ttl"])
                log.append((grant["seq"], request, grant))
                if grant["granted"]:
                    assert table.holder("L", request["now"], mode="linearizable")["token"] >= grant["token"]
                    release = {"op": "release", "lock": "L", "owner": owner, "token": grant["token"], "now": now()}
                    done = table.release("L", owner, grant["token"], release["now"])
                    log.append((done["seq"], release, done))
        run_threads(client, 4)
        assert locks.LockClient(nodes[1].sm, 0).holder("L", 10 ** 9, mode="stale") == {
            "owner": None, "token": max(r["token"] for _, _, r in log if "granted" in r)}
    log.sort(key=lambda entry: entry[0])
    assert [seq for seq, _, _ in log] == list(range(1, len(log) + 1))      # every command, once, in log order
    expected = _reference_locks([request for _, request, _ in log])
    got = []
    for _, request, result in log:
        if request["op"] == "acquire":
            got.append(("granted" if result["granted"] else "denied", result["owner"], result["token"]))
        else:
            got.append(("released" if result["released"] else "not-held", request["owner"], request["token"]))
    assert got == expected
    grants = [g for g in got if g[0] == "granted"]
    assert len(grants) > 4 and any(g[0] == "denied" for g in got)             # contended, and it moved around
    tokens = [g[2] for g in grants]
    assert tokens == sorted(tokens)                                           # fencing tokens never go back


def test_replicated_objects_count_every_call_once_on_every_node_through_sync_and_asyncio_proxies(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    import counter

    with three_nodes(tmp_path, "counter:Counters", groups=1) as nodes:
        def client(k):
            proxy = nodes[k % 3].replicated(counter.Counters, group=0)
            for _ in range(15):
                proxy.add("hits", 1)
            async def more():
                for _ in range(5):
                    await proxy.aio.add("hits", 2)
            asyncio.run(more())
        run_threads(client, 4)
        proxies = [node.replicated(counter.Counters, 0, read_mode="linearizable") for node in nodes]
        assert [p.get("hits") for p in proxies] == [4 * (15 + 10)] * 3
        with pytest.raises(errors.CommandError, match="TypeError: n must be an integer"):
            proxies[0].add("hits", "two")
        with pytest.raises(AttributeError, match="no @replicated or @query method 'random_call'"):
            proxies[0].random_call
        assert proxies[2].snapshot() == {"hits": 100}


def test_a_node_whose_state_machine_path_is_bad_does_not_start_and_says_why_in_one_line(tmp_path):
    cluster = tmp_path / "cluster"
    write_cluster(cluster, nodes=3, workers=2, groups=2, base_port=free_base_port(3, 2))
    with pytest.raises(errors.StartError) as info:
        Node(cluster / "node1.toml", state_machine="no_such_module_for_paxos:Factory", ready_timeout=60)
    message = str(info.value)
    assert "no module named 'no_such_module_for_paxos'" in message and "\n" not in message
    with pytest.raises(errors.ConfigError, match="state_machine: must be"):
        Node(cluster / "node1.toml", state_machine="no colon here", start=False)
