"""The public Python API: KV writes retried by request id, cas as a bool, an asyncio twin for every blocking call,
the README's error list, and its asyncio snippet.

The request-id and cas tests run against fake workers (tests/test_client.py's FakeCluster: the real Client and
KV, the real KVStateMachine, ZeroMQ on loopback); the asyncio test against a real cluster, one node of it a
`paxos_core.Node` in this process.
"""
import asyncio
import inspect
import pathlib
import re

import pytest

import paxos_core
from cluster_harness import LocalCluster, alive, wait_for
from paxos_core import errors
from paxos_core.client import Client
from paxos_core.kv import KV
from paxos_core.node import Node
from paxos_core.service import StateMachineClient
from paxos_core.statemachine import ApplyOrderError
from paxos_core.statemachine import kv as ops
from test_client import fake  # noqa: F401  (the fixture: fake workers behind the real Client)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _answer_lost(fake):
    """Every node applies what it is sent, and its answer is lost: the caller's outcome is unknown."""
    def handler(node, request):
        fake.apply(node, request)
        return None
    for node in fake.handlers:
        fake.handlers[node] = handler


def _answer(fake):
    for node in fake.handlers:
        fake.handlers[node] = fake.apply


# ---------------------------------------------------------------------------------------------- 1: request ids


def test_a_kv_put_that_timed_out_is_retried_with_its_request_id_and_applied_at_most_once(fake):
    # One attempt per call (the attempt timeout is longer than the call's), so the answer is really lost.
    kv = KV(fake.make_client(attempt_timeout=5.0), 16)
    _answer_lost(fake)
    with pytest.raises(errors.Timeout) as info:
        kv.put(b"p", b"1", timeout=0.5)
    rid = info.value.request_id
    assert isinstance(rid, tuple) and len(rid) == 2
    _answer(fake)
    # The put did land. Another write comes after it; the retry must not apply the put a second time.
    assert kv.put(b"p", b"2") == (ops.OK, None)
    assert kv.put(b"p", b"1", request_id=rid) == (ops.OK, None)       # the remembered result
    assert kv.get(b"p") == b"2"
    proposals = fake.proposals()
    assert (proposals[-1][1], proposals[-1][2]) == (rid[0], rid[1] | ops.RETRY_FLAG)   # same id, flagged


def test_kv_cas_and_delete_retried_with_their_request_ids_return_what_the_first_attempt_did(fake):
    kv = KV(fake.make_client(attempt_timeout=5.0), 16)
    _answer_lost(fake)
    with pytest.raises(errors.Timeout) as info:
        asyncio.run(kv.cas_async(b"c", None, b"a", timeout=0.5))
    cas_rid = info.value.request_id
    with pytest.raises(errors.Timeout) as info:
        kv.delete(b"missing", timeout=0.5)
    delete_rid = info.value.request_id
    _answer(fake)
    # Applied a second time, the cas would fail (the key now holds b"a"): a retry gets the first outcome.
    assert asyncio.run(kv.cas_async(b"c", None, b"a", request_id=cas_rid)) is True
    assert kv.cas(b"c", None, b"a", request_id=cas_rid) is True
    assert kv.cas(b"c", None, b"a") is False                            # a new request: a new command
    assert asyncio.run(kv.delete_async(b"missing", request_id=delete_rid)) == (ops.NOT_FOUND, None)
    # A caller's own id for a first attempt: retry=False, as with Client.propose.
    assert kv.put(b"own", b"x", request_id=(424242, 1), retry=False) == (ops.OK, None)
    assert asyncio.run(kv.put_async(b"own", b"x", request_id=(424242, 1))) == (ops.OK, None)


# ---------------------------------------------------------------------------------------------- 3: cas is a bool


def test_cas_returns_true_when_it_swapped_false_when_it_did_not_and_raises_on_an_error(fake):
    kv = KV(fake.make_client(), 16)
    assert kv.cas(b"k", None, b"v1") is True
    assert kv.cas(b"k", None, b"v2") is False
    assert kv.cas(b"k", b"v1", b"v2") is True
    assert asyncio.run(kv.cas_async(b"k", b"nope", b"v3")) is False
    assert kv.get(b"k") == b"v2"
    assert kv.cas(b"k", b"v2", None) is True                           # None as new: delete
    assert kv.get(b"k") is None
    for node in fake.handlers:
        fake.handlers[node] = fake.answer(ops.E_COMMAND)
    with pytest.raises(errors.PaxosError, match="ERROR"):
        kv.cas(b"k", None, b"v")
    with pytest.raises(errors.PaxosError, match="ERROR"):
        asyncio.run(kv.cas_async(b"k", None, b"v"))


# ---------------------------------------------------------------------------------------------- 2: asyncio twins

# Calls with no blocking twin needed: pure functions, constructors, a callback registration, the futures API,
# and Node.replicated (it makes a proxy without blocking; the proxy's methods have twins under `.aio`).
_NO_TWIN = {"group", "from_config", "from_cluster_dir", "on_master_change", "replicated"}


def _blocking_calls(cls):
    return sorted(name for name, fn in inspect.getmembers(cls, inspect.isfunction)
                  if not name.startswith("_") and not name.endswith(("_async", "_future")) and name not in _NO_TWIN)


@pytest.mark.parametrize("cls", [Node, Client, KV, StateMachineClient], ids=lambda c: c.__name__)
def test_every_blocking_call_has_an_async_twin(cls):
    calls = _blocking_calls(cls)
    assert "close" in calls or "put" in calls or "call" in calls
    missing = [name for name in calls if not inspect.iscoroutinefunction(getattr(cls, name + "_async", None))]
    assert not missing, "%s has no asyncio twin of %s" % (cls.__name__, missing)
    for name in calls:
        sync = inspect.signature(getattr(cls, name))
        twin = inspect.signature(getattr(cls, name + "_async"))
        assert list(twin.parameters) == list(sync.parameters), (cls.__name__, name)


def test_every_async_call_against_a_real_cluster(tmp_path):
    """Nodes 2 and 3 are `paxos-core node` processes; node 1 is a Node in this process, started and closed
    with its asyncio calls. Every asyncio call of Node, Client and KV is used once."""
    cluster = LocalCluster(tmp_path, nodes=3, workers=1, groups=4, start=False)
    node = None
    try:
        cluster.start(2)
        cluster.start(3)
        node = Node(cluster.config_path(1), start=False)
        client = cluster.client(prefer=2)
        asyncio.run(_async_scenario(cluster, node, client))
    finally:
        if node is not None:
            node.close()
        cluster.close()


async def _async_scenario(cluster, node, client):
    t = 30.0                                   # generous: elections on a loaded machine
    await node.start_async(ready_timeout=t)
    pids = list(node.supervisor.pids().values())
    cluster.known_pids.update(pids)            # the harness checks these are gone at its close, too
    rows = await node.wait_ready_async(timeout=t)
    assert [r["node"] for r in rows] == [1]
    assert [r["node"] for r in await node.status_async()] == [1]
    assert sorted({r["node"] for r in await client.status_async(timeout=t)}) == [1, 2, 3]

    # KV, through the embedded node.
    kv = node.kv
    assert (await kv.put_async(b"a", b"1", timeout=t)).status == ops.OK
    assert await kv.get_async(b"a", mode="linearizable", timeout=t) == b"1"
    assert await kv.cas_async(b"a", b"1", b"2", timeout=t) is True
    assert await kv.cas_async(b"a", b"1", b"3", timeout=t) is False
    assert (await kv.delete_async(b"a", timeout=t)).status == ops.OK
    assert await kv.get_async(b"a", mode="linearizable", timeout=t) is None
    # The same request id twice on a real cluster: applied once, the retry gets the first result.
    rid = (987654321, 1)
    assert await kv.cas_async(b"once", None, b"x", timeout=t, request_id=rid, retry=False) is True
    assert await kv.cas_async(b"once", None, b"x", timeout=t, request_id=rid) is True
    assert await kv.cas_async(b"once", None, b"x", timeout=t) is False

    # Node and Client proposals and reads.
    group = kv.group(b"n")
    result = await node.propose_async(group, ops.encode_put(b"n", b"v"), timeout=t)
    assert result.group == group and ops.decode_result(result.result).status == ops.OK
    raw = await node.read_async(group, ops.encode_get(b"n"), mode="linearizable", timeout=t)
    assert ops.decode_result(raw) == (ops.OK, b"v")
    result = await client.propose_async(group, ops.encode_put(b"m", b"w"), timeout=t)
    assert result.instance > 0
    batch = await client.propose_batch_async(group, [ops.encode_put(b"b1", b"1"), ops.encode_put(b"b2", b"2")],
                                             timeout=t)
    assert [ops.decode_result(r.result).status for r in batch] == [ops.OK, ops.OK]
    raw = await client.read_async(group, ops.encode_get(b"m"), mode="linearizable", timeout=t)
    assert ops.decode_result(raw) == (ops.OK, b"w")

    async def stale_shows(read):
        while ops.decode_result(await read()) != (ops.OK, b"2"):    # a node applies soon after the others
            await asyncio.sleep(0.05)
        return True

    assert await asyncio.wait_for(stale_shows(lambda: node.read_stale_async(group, ops.encode_get(b"b2"))), t)
    assert await asyncio.wait_for(stale_shows(lambda: client.read_stale_async(group, ops.encode_get(b"b2"), node=3)),
                                  t)

    # Groups added and removed at runtime.
    await node.add_group_async(100)
    info = await client.group_info_async(100, node=3)
    assert info["hosted"] is True
    result = await client.propose_async(100, ops.encode_put(b"g", b"1"), timeout=t)
    assert ops.decode_result(result.result).status == ops.OK
    await node.remove_group_async(100)
    assert (await client.group_info_async(100, node=2))["hosted"] is False
    incarnation = await client.add_group_async(101)
    assert incarnation >= 1 and (await client.group_info_async(101, node=1))["hosted"] is True
    await client.remove_group_async(101)
    assert (await client.group_info_async(101, node=1))["hosted"] is False

    await client.close_async()
    with pytest.raises(errors.PaxosError, match="closed"):
        await client.propose_async(group, ops.encode_put(b"z", b"z"))
    await node.close_async()
    wait_for(lambda: not any(alive(p) for p in pids), 15, message="node 1's workers gone")


# ---------------------------------------------------------------------------------------------- 4: errors


def _readme_error_list():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Errors are distinct classes")
    return readme[start:readme.index("\n\n", start)]


def _public_errors():
    found = {}
    for module in (errors, paxos_core):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, errors.PaxosError) and not name.startswith("_"):
                found[name] = obj
    return found


def test_the_readme_error_list_names_every_public_error_class():
    names = set(re.findall(r"`(?:paxos_core\.(?:statemachine\.)?)?(\w+)`", _readme_error_list()))
    public = _public_errors()
    assert {"PaxosError", "UnknownGroupError", "FrameError", "SessionExpired", "StaleRequest"} <= set(public)
    assert not set(public) - names, "not in README's error list: %s" % sorted(set(public) - names)
    assert "ApplyOrderError" in names and issubclass(ApplyOrderError, errors.PaxosError)
    # ... and every error class is importable from the package itself.
    in_errors = {n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, errors.PaxosError)}
    assert not in_errors - set(paxos_core.__all__), sorted(in_errors - set(paxos_core.__all__))


def test_unknown_group_error_is_the_public_class_the_client_raises(fake):
    from paxos_core.wire import rpc

    assert rpc.UnknownGroupError is errors.UnknownGroupError is paxos_core.UnknownGroupError
    client = fake.make_client()
    for node in fake.handlers:
        fake.handlers[node] = fake.refuse(rpc.UNKNOWN_GROUP, "no group %(group)d here")
    with pytest.raises(paxos_core.UnknownGroupError) as info:
        client.propose(77, ops.encode_put(b"k", b"v"))
    assert info.value.request_id is not None                     # every error of a proposal names its request


# ---------------------------------------------------------------------------------------------- README snippet


def test_the_readmes_asyncio_snippet_runs_against_a_real_cluster(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Embed it in an asyncio service", 1)[1]
    snippet = re.search(r"```python\n(.+?)\n```", section, re.S).group(1)
    assert "/tmp/demo/node1.toml" in snippet
    cluster = LocalCluster(tmp_path, nodes=3, workers=1, groups=8, start=False)
    made, pids = [], []

    class RecordedNode(Node):                 # the snippet's Node, so that its workers can be checked
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

        def close(self):
            pids.extend(self.supervisor.pids().values())
            super().close()

    monkeypatch.setattr(paxos_core, "Node", RecordedNode)
    try:
        cluster.start(2)
        cluster.start(3)
        exec(compile(snippet.replace("/tmp/demo/node1.toml", str(cluster.config_path(1))), "README.md", "exec"),
             {"__name__": "readme_snippet"})
        assert len(made) == 1 and len(pids) == 1          # one worker, closed by the snippet
        wait_for(lambda: not any(alive(p) for p in pids), 15, message="the snippet's workers gone")
        printed = capsys.readouterr().out.splitlines()
        assert "b'alice'" in printed and "user:42 changed meanwhile" not in printed
        assert re.fullmatch(r"\d+ \(\d+, \d+\)", printed[-1]), printed
        raw = cluster.client(prefer=2).read(7, ops.encode_get(b"k"), mode="linearizable")
        assert ops.decode_result(raw) == (ops.OK, b"v")
        assert cluster.kv(prefer=3).get(b"user:42", mode="linearizable") is None
    finally:
        for node in made:
            node.close()
        cluster.close()
