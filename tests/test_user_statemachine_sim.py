"""`paxos-core sim --state-machine MODULE:FACTORY`: the simulator runs a state machine of your own through its
faults and checks that every replica holds the state the chosen log gives; a non-deterministic one is caught."""
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_harness import package_env
from paxos_core.sim.simulation import SimConfig, run_seed

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


sys.path.insert(0, str(EXAMPLES))      # the seeds import the examples by their import paths
import bank  # noqa: E402


class Jittery(bank.Ledger):
    """The bank, plus one write that differs on every replica: a random number (never do this)."""

    def apply(self, group, instance, op):
        result = super().apply(group, instance, op)
        self.put(group, b"noise", b"%r" % random.random())
        return result


@pytest.mark.parametrize("seed,groups", [(0, 1), (1, 2), (2, 1), (3, 3)])
def test_the_bank_example_survives_the_simulators_faults_with_every_replica_in_the_same_state(seed, groups):
    result = run_seed(SimConfig(seed=seed, groups=groups, state_machine="bank:Ledger"))
    assert result.ok, result.violations
    assert result.acked > 10


@pytest.mark.parametrize("spec", ["locks:LockTable", "counter:Counters"])
def test_the_lock_and_object_examples_survive_the_simulators_faults(spec):
    result = run_seed(SimConfig(seed=5, groups=2, state_machine=spec))
    assert result.ok, result.violations
    assert result.acked > 10


def test_a_non_deterministic_state_machine_is_caught_by_the_replica_state_check():
    for seed in (0, 1):
        result = run_seed(SimConfig(seed=seed, state_machine="%s:Jittery" % __name__))
        assert not result.ok
        # Caught at the end, or already at a restart (checkpoint seeds check the state there too).
        assert any("state machine state at instance" in v and "the state the chosen log gives" in v
                   for v in result.violations), result.violations


def test_the_sim_command_runs_a_state_machine_of_the_current_directory_and_refuses_a_bad_path():
    command = [sys.executable, "-m", "paxos_core", "sim", "--seeds", "2", "--jobs", "1",
               "--state-machine", "bank:Ledger"]
    done = subprocess.run(command, cwd=EXAMPLES, env=package_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("seeds=2 violations=0 trace=")
    bad = subprocess.run(command[:-1] + ["bank:NoSuchLedger"], cwd=EXAMPLES, env=package_env(),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "paxos-core sim: state machine 'bank:NoSuchLedger': bank has no attribute 'NoSuchLedger'"
