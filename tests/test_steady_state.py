"""What one instance costs on a stable leader: one Accept round, one record per acceptor, no Prepare."""
from paxos_core.sim.loopback import LoopbackCluster
from paxos_core.wire.message import Kind


def test_stable_leader_one_accept_round_and_one_record_per_acceptor_per_instance():
    cluster = LoopbackCluster(nodes=3, groups=1, window=1)
    cluster.propose(1, 0, b"first")          # the first proposal elects node 1 (Prepare round)
    assert cluster.engines[1].is_leading(0)
    assert len(cluster.acks) == 1
    sent_before = dict(cluster.sent)
    records_before = dict(cluster.records)

    instances = 50
    for k in range(instances):
        cluster.propose(1, 0, b"value-%d" % k)
        assert len(cluster.acks) == k + 2, "each proposal is chosen before the next is made"

    sent = {kind: cluster.sent.get(kind, 0) - sent_before.get(kind, 0) for kind in cluster.sent}
    peers = 2
    assert sent.get(Kind.PREPARE, 0) == 0 and sent.get(Kind.PROMISE, 0) == 0
    assert sent.get(Kind.ACCEPT, 0) == instances * peers
    assert sent.get(Kind.ACCEPTED, 0) == instances * peers
    assert sum(sent.values()) == 2 * instances * peers, sent
    for node in (1, 2, 3):
        assert cluster.records[node] - records_before[node] == instances

    # Followers learned every instance but the last from the marks on later Accepts, with no extra write;
    # once the leader has been idle for idle_chosen_ticks it tells them about the last one.
    leader_chosen = [v for _, _, v in cluster.chosen[1]]
    assert len(leader_chosen) == instances + 1
    cluster.tick(3)                          # idle_chosen_ticks
    assert cluster.sent.get(Kind.CHOSEN, 0) == peers
    for node in (2, 3):
        assert [v for _, _, v in cluster.chosen[node]] == leader_chosen
        assert cluster.records[node] - records_before[node] == instances


def test_pipelined_window_batches_queued_proposals_and_applies_in_order():
    cluster = LoopbackCluster(nodes=3, groups=1, window=4)
    engine = cluster.engines[1]
    for k in range(200):
        engine.propose(0, b"p%03d" % k, k)
    cluster.settle()
    cluster.tick(3)
    assert sorted(tag for tag, _, _ in cluster.acks) == list(range(200))
    instances = [i for _, i, _ in cluster.chosen[1]]
    assert instances == list(range(len(instances)))
    assert len(instances) < 200, "queued proposals share instances"
    for node in (2, 3):
        assert cluster.chosen[node] == cluster.chosen[1]


def test_idle_groups_cost_bytes_not_objects():
    cluster = LoopbackCluster(nodes=3, groups=1000, window=1)
    for group in range(0, 1000, 7):
        cluster.propose(1, group, b"x")
    # The leader tells the learners its last mark when idle, and once more later in case that was lost; then
    # nothing is left of the groups' activity.
    cluster.tick(17 * cluster.configs[1].idle_chosen_ticks)
    for engine in cluster.engines.values():
        assert engine.active_groups() == 0
        assert len(engine.proposer.groups) == 0
        assert len(engine.acceptor.accepted) == 0
        assert engine.idle_bytes_per_group() <= 160      # 159 bytes of arrays (docs/architecture.md)


def test_a_worker_with_input_keeps_its_groups_loaded_and_unloads_them_after_a_quiet_second():
    """Found by profiling `bench --groups 100` (server mode): a follower worker counted as idle between turns
    and unloaded the state machine's groups at every poll, so it reloaded every group it applied to, with all
    its sessions, at almost every turn (a quarter of its CPU in RocksStore.scan). Groups now go after
    `unload_after_s` without input; optimisation 7 in docs/BENCHMARKS.md measures it."""
    from test_safety_findings import _Clock, _one_node_loop, _turns

    from paxos_core.statemachine import kv
    from paxos_core.wire import rpc

    clock = _Clock()
    loop = _one_node_loop(clock)
    put = rpc.propose_request(1, 0, 1000, 77, 1, kv.encode_put(b"k", b"v1"))
    assert [r[0] for r in _turns(loop, clock, [(b"c", put)], n=20)] == [rpc.OK]
    clock.t += 1.5
    loop.turn((), [(b"c", rpc.simple_request(rpc.STATUS, 2))])        # input that leaves the groups idle
    loop.take_replies()
    assert loop._idle()
    loop.poll_timeout()
    assert loop.sm._groups, "input in the last second: the group stays loaded"
    clock.t += 1.5
    loop.turn()
    loop.poll_timeout()
    assert not loop.sm._groups, "a quiet second: idle groups keep no Python objects"
