"""Run many simulator seeds (in parallel processes) and summarise them."""
import hashlib
import itertools
import multiprocessing
import os
import sys

from .simulation import FAULT_KINDS, SimConfig, run_seed


def plan(seeds, seed_base=0, nodes=(3,), groups=(1,), faults=FAULT_KINDS, plant="", clients=None, window=None,
         state_machine=""):
    """One SimConfig per seed; seeds cycle through every (nodes, groups) combination."""
    combos = list(itertools.product(nodes, groups))
    configs = []
    for k in range(seeds):
        n, g = combos[k % len(combos)]
        cfg = SimConfig(seed=seed_base + k, nodes=n, groups=g, faults=tuple(faults), plant=plant,
                        state_machine=state_machine)
        if clients is not None:
            cfg.clients = clients
        if window is not None:
            cfg.window = window
        configs.append(cfg)
    return configs


def _describe(cfg):
    return "nodes=%d groups=%d faults=%s%s%s" % (cfg.nodes, cfg.groups, ",".join(cfg.faults),
                                                 " plant=%s" % cfg.plant if cfg.plant else "",
                                                 " state_machine=%s" % cfg.state_machine if cfg.state_machine else "")


def run_many(configs, jobs=None, fail_fast=False, out=sys.stdout, progress=None):
    """Run every config; print failures as they come. Returns (results, hash).

    `progress`: None, or an object told of each finished seed (``update(1)``) that also writes the failure
    lines (``write(line, out)``), so that a progress bar on a terminal is not torn by them
    (paxos_core.cli.progress.Progress)."""
    def say(line):
        if progress is not None:
            progress.write(line, out)
        else:
            print(line, file=out)

    jobs = jobs or min(len(configs), os.cpu_count() or 1)
    results = []
    if jobs <= 1:
        iterator = map(run_seed, configs)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(jobs)
        iterator = pool.imap(run_seed, configs, chunksize=4)
    by_seed = {cfg.seed: cfg for cfg in configs}
    try:
        for result in iterator:
            results.append(result)
            if progress is not None:
                progress.update(1)
            if not result.ok:
                cfg = by_seed[result.seed]
                say("seed=%d FAILED (%s) trace=%s" % (result.seed, _describe(cfg), result.trace))
                for line in result.violations[:5]:
                    say("    " + line)
                say("    reproduce: paxos-core sim --seeds 1 --seed-base %d --nodes %d --groups %d --faults %s%s%s%s"
                    % (result.seed, cfg.nodes, cfg.groups, ",".join(cfg.faults),
                       " --plant " + cfg.plant if cfg.plant else "",
                       " --state-machine " + cfg.state_machine if cfg.state_machine else "",
                       " --clients %d" % cfg.clients if cfg.clients != SimConfig.clients else ""))
                if fail_fast:
                    break
    finally:
        if pool is not None:
            pool.terminate()
    results.sort(key=lambda r: r.seed)
    digest = hashlib.blake2b(digest_size=16)
    for r in results:
        digest.update(b"%d:%s;" % (r.seed, r.trace.encode()))
    return results, digest.hexdigest()


def summary_line(results, trace):
    violations = sum(len(r.violations) for r in results)
    return "seeds=%d violations=%d trace=%s" % (len(results), violations, trace)
