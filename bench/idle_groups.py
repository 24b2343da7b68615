"""Memory and CPU of idle groups in one engine.

Builds an Engine hosting N groups, makes every group do one round of work (elect, choose one value) so that
each has touched all of its state, lets them go idle, then reports:
  * array bytes per idle group (the numpy state);
  * resident memory per group, measured (RSS before/after, divided by N);
  * Python objects left behind per group (should be 0 once idle);
  * the CPU cost of a tick over N idle groups.

    python bench/idle_groups.py --groups 10000,100000
"""
import argparse
import gc
import random
import resource
import time

from paxos_core.core.config import CoreConfig
from paxos_core.core.engine import Engine


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def settle(engine):
    """Persist instantly until the engine has nothing more to do."""
    while True:
        fx = engine.take_effects()
        if not fx:
            return
        engine.persisted(fx.token)


def measure(n_groups, active_fraction=1.0):
    gc.collect()
    base = rss_bytes()
    engine = Engine(CoreConfig(node_id=1, members=(1,), n_groups=n_groups), random.Random(0))
    created = rss_bytes()
    # One-node cluster: every proposal is chosen as soon as its record is "persisted".
    step = max(1, int(1 / active_fraction))
    for g in range(0, n_groups, step):
        engine.propose(g, b"x" * 16, g)
        settle(engine)
    for now in range(1, 257):      # idle groups drop out; the engine re-packs its dicts every 256 ticks
        engine.tick(now)
        settle(engine)
    gc.collect()
    after = rss_bytes()
    t0 = time.perf_counter()
    ticks = 200
    for now in range(257, 257 + ticks):
        engine.tick(now)
    tick_us = (time.perf_counter() - t0) / ticks * 1e6
    leftovers = (len(engine.proposer.groups) + len(engine.acceptor.accepted) + len(engine.learner.decided)
                 + len(engine.learner.outstanding) + engine.active_groups())
    return {
        "groups": n_groups,
        "array_bytes_per_group": engine.idle_bytes_per_group(),
        "rss_bytes_per_group_created": (created - base) / n_groups,
        "rss_bytes_per_group_after_use": (after - base) / n_groups,
        "objects_left_per_group": leftovers / n_groups,
        "tick_us_all_idle": tick_us,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", default="10000,100000")
    args = parser.parse_args()
    for n in [int(x) for x in args.groups.split(",")]:
        r = measure(n)
        print("groups=%(groups)d array=%(array_bytes_per_group)d B/group rss(created)=%(rss_bytes_per_group_created).0f "
              "B/group rss(after use)=%(rss_bytes_per_group_after_use).0f B/group objects left=%(objects_left_per_group).6f "
              "tick over all idle=%(tick_us_all_idle).2f us" % r)


if __name__ == "__main__":
    main()
