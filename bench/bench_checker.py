"""Throughput of the two history checkers on histories of a real atomic register.

Builds, per key, a history of ``--clients`` clients issuing ``--ops`` operations in all (reads, writes, cas;
a few of unknown outcome) one after another; each op takes effect at a random point inside its interval, and
results come from executing them in that order. Then times the log-order checker (given the true applied
order) and the linearizability checker, and prints operations checked per second.

    python bench/bench_checker.py                     # 10 clients, 10,000 ops, one key
    python bench/bench_checker.py --clients 16 --ops 2000 --unknown 0.02
"""
import argparse
import random
import time

from paxos_core.check import NOT_OBSERVED, Op, check_linearizability, check_log_order


def atomic_history(rng, key, clients, n_ops, unknown_fraction, first_id=0):
    """(ops, applied changes) of one key, op ids from ``first_id``; see the module docstring."""
    free_at = [0.0] * clients
    planned = []
    for number in range(n_ops):
        client = rng.randrange(clients)
        invoke = free_at[client] + rng.expovariate(1 / 0.2)
        complete = invoke + rng.expovariate(1.0)
        free_at[client] = complete
        kind = rng.choices(("read", "write", "cas"), weights=(5, 4, 1))[0]
        outcome = "unknown" if rng.random() < unknown_fraction else "ok"
        op = Op(id=first_id + number, key=key, kind=kind, invoke=invoke, complete=complete if outcome == "ok" else None,
                outcome=outcome, client=client)
        if kind != "read":
            op.value = b"%s-%d" % (key, first_id + number)
        point = rng.uniform(invoke, complete)
        if outcome == "unknown" and rng.random() < 0.5:
            point = None
        planned.append((point, op))
    state = None
    recent = [None]
    changes = []
    for point, op in sorted((p for p in planned if p[0] is not None), key=lambda p: p[0]):
        if op.kind == "read":
            op.result = state
        elif op.kind == "write":
            state = op.value
            changes.append((op.id, op.value))
        else:
            # expect the current value most of the time so that cas swaps as often as it fails
            op.expected = state if rng.random() < 0.5 else rng.choice(recent)
            if state == op.expected:
                state = op.value
                changes.append((op.id, op.value))
                op.result = True
            else:
                op.result = False
                op.observed = state   # as the KV store's CAS_FAILED result reports it
        recent = (recent + [state])[-8:]
    for _, op in planned:
        if op.kind == "cas" and op.result is None:   # unknown, never took effect
            op.expected = rng.choice(recent)
    return [op for _, op in planned], changes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--ops", type=int, default=10_000, help="operations per key")
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--unknown", type=float, default=0.01, help="fraction of ops with unknown outcome")
    parser.add_argument("--budget", type=float, default=120.0, help="linearizability budget per key, seconds")
    parser.add_argument("--blind-cas", action="store_true",
                        help="failed cas do not report the value they saw (keeps unknown-outcome ops in the "
                             "search: much slower)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    history, applied = [], {}
    for k in range(args.keys):
        key = b"key%d" % k
        ops, changes = atomic_history(rng, key, args.clients, args.ops, args.unknown, first_id=k * args.ops)
        if args.blind_cas:
            for op in ops:
                op.observed = NOT_OBSERVED
        history += ops
        applied[key] = changes
    total = len(history)
    print("history: %d keys x %d ops, %d clients, %.1f%% unknown outcome"
          % (args.keys, args.ops, args.clients, 100 * args.unknown))

    started = time.perf_counter()
    log_result = check_log_order(history, applied)
    elapsed = time.perf_counter() - started
    print("log-order:       %-9s %8.3f s  %10.0f ops/s" % ("ok" if log_result.ok else "ANOMALIES", elapsed,
                                                           total / elapsed))

    started = time.perf_counter()
    lin_result = check_linearizability(history, budget_s=args.budget)
    elapsed = time.perf_counter() - started
    states = sum(r.states for r in lin_result.keys.values())
    print("linearizability: %-9s %8.3f s  %10.0f ops/s  (%d search states)" % (lin_result.verdict, elapsed,
                                                                               total / elapsed, states))


if __name__ == "__main__":
    main()
