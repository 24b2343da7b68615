"""The `member` fault: an operator who changes the cluster's members all through the run (issue 14).

While the other fault kinds take their turns, this operator grows the cluster from 3 voters to 5 and shrinks it
back, again and again, the way the README tells an operator to, through ``client.membership`` (the commands of
``paxos-core member``) and ``paxos-core node --join``. A step every 1 to 3 s: adds while growing (up to 5
voters), removals while shrinking (down to 3), and a replacement now and then either way (the seed picks
among the steps that fit; ``voter_counts`` in the run's summary shows the way the cluster went):

add       a spare host (its key pair made there by ``keygen`` at set-up) is added as a learner, its join bundle
          written (``join.make_bundle``, what ``member add --out`` writes), the node started with ``node --join
          BUNDLE --dir FOLDER``; once caught up (``LearnerNotReady`` until then) it is promoted.
remove    a voter leaves: a random one, or the master of a group the clients use. It must exit by itself with
          exit code 4 and say so in its log; if it does not, the run fails. Variant ``driver-killed``: right after
          the change is proposed, the node whose worker 0 leads the system group is killed -9; the command is run
          again (it is idempotent) and must complete; the killed node is started again.
replace   a voter is killed -9 and its data directory deleted (a dead disk); a spare host joins in its place
          (``member add --replaces``), and ``member replace OLD NEW`` swaps them in one epoch.

A removal waits for the other faults to be healed and keeps them off while it runs (``Nemesis.quiet``), so that
the removed node's own exit is checked within the step (one down or cut off when removed hears of it only from
its supervisor's removal watch, up to 30 s later). Adds and replacements run under the other faults; a replacement
waits, holding ``quiet``, until no node is rebuilding before it kills its voter. Every step is a FaultRecord of kind
``member``; a step that could not be made (no quorum, a timeout) is reported as not injected, and the next step
starts from the table as it is. The node taking part in a step is kept off the other faults' targets until the
step ends (``Nemesis.busy``).
"""
import os
import shutil
import time

from .. import errors
from ..cli.cluster import EXIT_REMOVED
from ..client import Client
from ..join import make_bundle, write_bundle
from .retry import until_done

STEP_TIMEOUT = 150.0          # a join catches up from snapshots while faults strike: give it time


def _refused(exc):
    """A membership change refused for good (not one that may pass later: the table changed meanwhile, the
    learner is not caught up yet, or the live quorum would be lost now)."""
    return isinstance(exc, errors.MembershipError) and not isinstance(
        exc, (errors.EpochConflict, errors.LearnerNotReady, errors.WouldLoseQuorum))


class MemberOperator:
    """Run by the Nemesis in a thread of its own when ``member`` is among the fault kinds."""

    def __init__(self, nemesis, rng, record_type):
        self.held = set()
        self.wiped = set()                  # members killed and wiped for a replacement, until every group has left them
        self.nemesis = nemesis
        self.cluster = nemesis.cluster
        self.rng = rng
        self.record_type = record_type
        self.problems = []                  # what makes the run fail (a removed node that did not leave, ...)
        self.max_voters = min(5, len(self.cluster.nodes) + 2)
        self.min_voters = len(self.cluster.nodes)
        self.changes = 0
        self.growing = True                 # toward max_voters (else toward min_voters)
        self.sizes = [len(self.cluster.nodes)]   # the voters' count after each change made
        self.filled = 0                     # groups added at run time that a joined node got at its promotion

    # ------------------------------------------------------------------ helpers
    def _client(self):
        cluster = self.cluster
        return Client(cluster.endpoints(), cluster.workers, cluster.groups, default_timeout=10.0,
                      **cluster.client_keys(admin=True, avoid=self.held))

    def _until(self, what, deadline):
        """``what(client)`` retried with a fresh client (the node whose key it uses may have left) on errors that
        say nothing or not yet, until it returns or ``deadline``; a MembershipError that is not one of those
        (the change is refused) is raised at once."""
        return until_done(self._client, what, deadline, 1.0, final=_refused)

    def _adopted(self, epoch):
        """Whether every node that answers has every group on the voters of ``epoch`` now (Change.wait's test);
        False if the question goes unanswered."""
        client = self._client()
        try:
            return bool(client.membership.progress(epoch, timeout=5.0)["done"])
        except errors.PaxosError:
            return False
        finally:
            client.close()

    def _wait_adopted(self, epoch, deadline):
        """Until :meth:`_adopted` holds for ``epoch``."""
        while time.monotonic() < deadline:
            if self._adopted(epoch):
                return
            time.sleep(0.5)
        raise errors.Timeout("epoch %d: not adopted everywhere in time" % epoch)

    def _hold(self, node_id):
        """Keep the other faults off ``node_id`` until this step ends."""
        self.nemesis.busy.add(node_id)
        self.held.add(node_id)

    @staticmethod
    def _table(client):
        return client.membership.table()

    def _live(self):
        """Current members that are up, not paused, and in no other step."""
        return [n for n, node in sorted(self.cluster.nodes.items())
                if node.alive() and not node.paused and n not in self.nemesis.busy]

    # ------------------------------------------------------------------ the loop
    def run(self, stop):
        self._add_group()
        while not stop.is_set():
            record = self.step(stop)
            if record is not None:
                self.nemesis.records.append(record)
            stop.wait(self.rng.uniform(1.0, 3.0))

    def step(self, stop):
        deadline = time.monotonic() + STEP_TIMEOUT
        try:
            table = self._until(self._table, deadline)
        except errors.PaxosError:
            return None
        voters, learners = table["voters"], table["learners"]
        replaced = self.wiped - set(voters + learners)
        if replaced and self._adopted(table["epoch"]):
            # Out of the table is not enough: an idle group may still vote on the old voters until it adopts
            # the epoch that replaced them (nemesis seed 603).
            self.wiped -= replaced
        spare = [n for n in self.cluster.spare_ids if n >= table["next_id"]]
        choices = []
        gone = [v for v in voters + learners if v not in self.cluster.nodes]
        if gone:
            choices = ["forget"]       # a wiped voter whose replacement did not complete: removed now
        elif learners:
            choices = ["promote"]
        else:
            # 3 -> 5 -> 3 -> ...: grow to max_voters, then shrink to min_voters, and so on; a replacement now
            # and then on the way (the cluster's size stays).
            if len(voters) >= self.max_voters or not spare:
                self.growing = False
            elif len(voters) <= self.min_voters:
                self.growing = True
            if self.growing:
                choices.append("add")
            elif len(voters) > self.min_voters:
                choices += ["remove", "remove-master", "remove-driver-killed"]
            live = [v for v in self._live() if v in voters]
            if spare and len(voters) >= self.min_voters and len(live) >= len(voters) // 2 + 2:
                choices.append("replace")        # with one voter to spare for the other faults
        if not choices:
            return None
        variant = self.rng.choice(choices)
        record = self.record_type("member", variant, None, time.monotonic())
        self.held = set()
        try:
            getattr(self, "_" + variant.split("-")[0])(record, table, deadline)
            record.healed = time.monotonic()
            self.changes += 1
            self.sizes.append(len(self._until(self._table, deadline)["voters"]))
        except Exception as exc:                          # reported, and the next step reads the table again
            record.detail = "not injected: %s: %s" % (type(exc).__name__, exc)
            record.injected = False
        finally:
            self.nemesis.busy.difference_update(self.held)
        self.nemesis.say("nemesis: %.1f s member %s node %s%s" % (
            record.start - self.nemesis.t0, variant, record.target, " (%s)" % record.detail if record.detail else ""))
        return record

    def _add_group(self):
        """The first change: group ``groups`` added while the cluster runs (no node file lists it, no client key
        maps to it). A node that joins holds its node file's groups only: each promotion and replacement must put
        this one there first (``_check_filled``). Checked like the regroup fault's groups (held by every member,
        empty, writable); where a node loses its data, Nemesis.mend_regrouped puts it back."""
        nemesis, group = self.nemesis, self.cluster.groups
        nemesis.added[group] = None                 # the end's convergence covers it, whatever comes of the add
        deadline = time.monotonic() + 60
        try:
            incarnation = nemesis.added[group] = self._until(lambda client: client.add_group(group), deadline)
            nemesis.regrouped.add(group)
            nemesis.check_group_back(group, incarnation, b"added", deadline)
        except Exception as exc:
            self.problems.append("group %d could not be added at the start: %s: %s" % (group, type(exc).__name__,
                                                                                      exc))
            return
        nemesis.say("nemesis: %.1f s member: group %d added beyond the node files (incarnation %d)"
                    % (time.monotonic() - nemesis.t0, group, incarnation))

    def rebuild_bundle(self, node_id, deadline):
        """For member ``node_id``, wiped: the path of its bundle of the table's nodes and keys (what ``member
        bundle ID --out`` writes), when the node file it restarts from lists no other member left, else None.
        Such a node knows no peer to rebuild from and refuses every peer's key (nemesis seed 622: node 1,
        wiped after nodes 2 and 3 were replaced); an operator restarts it with ``node FILE --rebuild --bundle``.
        With one listed peer left it learns the table from it, so that path is left to run too."""
        from ..config import load_config

        cluster = self.cluster
        table, history = self._until(lambda client: (client.membership.table(), client.membership.history()),
                                     deadline)
        members = {n["id"] for n in table["nodes"] if n["role"] != "removed"}
        if set(load_config(cluster.nodes[node_id].path).members) & (members - {node_id}):
            return None
        path = os.path.join(cluster.dir, "rebuild-node%d-epoch%d.json" % (node_id, table["epoch"]))
        write_bundle(path, make_bundle(cluster.configs[0], table, node_id, history[0]["voters"]))
        return path

    # ------------------------------------------------------------------ steps
    def _join(self, record, table, deadline, replaces=None):
        """A spare host joins as a learner (a bundle, ``node --join``); returns the new id."""
        cluster = self.cluster
        new_id = table["next_id"]
        public = cluster.keypairs[new_id][0].decode()
        host = cluster.topology.address(new_id)
        peer_port, client_port = cluster.spare_ports

        def add(client):
            change = client.membership.add(host, peer_port, client_port, public, replaces=replaces)
            return change, client.membership.table(), client.membership.history()

        self._hold(new_id)
        change, table, history = self._until(add, deadline)
        if change.node != new_id:
            raise RuntimeError("the table gave the new node id %s, not %d" % (change.node, new_id))
        bundle = os.path.join(cluster.dir, "host%d" % new_id, "join.json")
        write_bundle(bundle, make_bundle(cluster.configs[0], table, new_id, history[0]["voters"]))
        node = cluster.joining_node(new_id, bundle)
        cluster.set_members({**cluster.nodes, new_id: node})
        node.start()
        record.injected = True
        return new_id

    def _add(self, record, table, deadline):
        new_id = self._join(record, table, deadline)
        record.target = new_id
        record.detail = "joined by bundle and promoted" + self._promote_one(new_id, deadline)

    def _promote(self, record, table, deadline):
        learner = table["learners"][0]
        record.target = learner
        record.injected = True
        record.detail = "a learner left by an earlier step, promoted" + self._promote_one(learner, deadline)

    def _promote_one(self, node_id, deadline):
        self._hold(node_id)
        lacked = self._lacks(node_id, deadline)
        change = self._until(lambda client: client.membership.promote(node_id), deadline)
        self._wait_adopted(change.epoch, deadline)
        return self._check_filled(node_id, lacked, deadline)

    def _lacks(self, node_id, deadline):
        """The groups added beyond the node files (``_add_group``; Nemesis.added, once the add completed) that
        ``node_id`` does not hold now."""
        added = sorted(g for g, incarnation in list(self.nemesis.added.items()) if incarnation is not None)
        if not added:
            return []
        return self._until(lambda client: [g for g in added if not client.group_info(g, node_id)["hosted"]],
                           deadline)

    def _check_filled(self, node_id, lacked, deadline):
        """After ``node_id`` became a voter: it must hold every group added at run time (the table places every
        group on every voter; one it lacks would vote short of a copy for good). ``lacked``: those it did not
        hold before, which its promotion put there. A detail for the record."""
        still = self._lacks(node_id, deadline)
        if still:
            self.problems.append("node %d became a voter without group(s) %s, added while the cluster ran"
                                 % (node_id, still))
            return "; it lacks group(s) %s added at run time" % still
        self.filled += len(lacked)
        return "; group(s) %s added at run time put there first" % lacked if lacked else ""

    def _forget(self, record, table, deadline):
        gone = [v for v in table["voters"] + table["learners"] if v not in self.cluster.nodes][0]
        record.target = gone
        change = self._until(lambda client: client.membership.remove(gone), deadline)
        record.injected = True
        self._wait_adopted(change.epoch, deadline)
        record.detail = "a wiped node left in the table by an earlier step, removed"

    def _remove(self, record, table, deadline):
        nemesis = self.nemesis
        with nemesis.quiet:                  # no other fault while a node is removed (module docstring)
            live = [n for n in self._live() if n in table["voters"]]
            if record.variant == "remove-master":
                master, _ = nemesis.master_of(self.rng.choice(nemesis.key_groups)) if nemesis.key_groups else (None, 0)
                target = master if master in live else None
            else:
                target = None
            if target is None:
                if not live:
                    raise RuntimeError("no live voter to remove")
                target = self.rng.choice(live)
            record.target = target
            self._hold(target)
            killed = None
            try:
                change = self._until(lambda client: client.membership.remove(target), deadline)
                record.injected = True
                if record.variant == "remove-driver-killed":
                    killed = self._kill_system_master(target)
                    record.detail = "node %s (the system group's master) killed -9 after the change; " % killed
                    # Run again: idempotent (nothing changes twice), and it completes.
                    change = self._until(lambda client: client.membership.remove(target), deadline)
                self._wait_adopted(change.epoch, deadline)
                self._left(record, target, deadline)
            except Exception:
                # The removal may have been made all the same: then the node leaves, and must say so. A node
                # that already exited with the code of a removed node left (the table may not answer in time:
                # nemesis seed 346 kept such a node as a member and started it again at the end).
                node = self.cluster.nodes.get(target)
                if node is not None and ((node.proc is not None and node.proc.poll() == EXIT_REMOVED)
                                         or self._removed_in_table(target)):
                    self._left(record, target, time.monotonic() + 60)
                raise
            finally:
                if killed is not None and not self.cluster.nodes[killed].alive():
                    self.cluster.nodes[killed].start()

    def _removed_in_table(self, node_id):
        try:
            table = self._until(self._table, time.monotonic() + 30)
        except errors.PaxosError:
            return False
        return any(n["id"] == node_id and n["role"] == "removed" for n in table["nodes"])

    def _kill_system_master(self, leaving):
        """kill -9 the node whose worker 0 leads the system group (not the leaving one); its id, or None."""
        nemesis = self.nemesis
        votes = {}
        for worker in nemesis._status():                 # the system group's master is under "membership"
            master = worker.get("membership", {}).get("master")
            if master:
                votes[master] = votes.get(master, 0) + 1
        master = max(votes, key=lambda m: (votes[m], -m)) if votes else None
        if master is None or master == leaving or master not in self.cluster.nodes:
            return None
        self._hold(master)
        self.cluster.nodes[master].kill()
        return master

    def _left(self, record, node_id, deadline):
        """The removed node must exit by itself with code 4, having said why."""
        node = self.cluster.nodes[node_id]
        try:
            code = node.proc.wait(max(1.0, min(60.0, deadline - time.monotonic())))
        except Exception:
            code = None
        with open(node.log_path, "rb") as f:
            said = b"was removed from the cluster" in f.read()
        members = dict(self.cluster.nodes)
        members.pop(node_id, None)
        self.cluster.set_members(members, {**self.cluster.removed, node_id: node})
        if code != 4 or not said:
            node.stop()
            self.problems.append("node %d was removed but did not leave by itself (exit code %s, %s)"
                                 % (node_id, code, "said so" if said else "its log does not say it was removed"))
        record.detail += "left: exit code %s" % code

    def _replace(self, record, table, deadline):
        cluster, nemesis = self.cluster, self.nemesis
        # Not while a node rebuilds: with a voter killed and wiped beside one that lost its memory, no majority
        # remembers and nothing is chosen again (nemesis seed 610: node 4 of voters 1-4 replaced while node 1
        # rebuilt after a wipe; the add of its replacement never got through). `quiet` keeps the faults that
        # take memory out from this check to the kill; after it, `wiped` does.
        with nemesis.quiet:
            nemesis.wait_no_rebuild()
            live = [n for n in self._live() if n in table["voters"]]
            if len(live) < len(table["voters"]) // 2 + 2:
                raise RuntimeError("too few live voters to lose one more (%s of %s)" % (live, table["voters"]))
            old = self.rng.choice(live)
            record.target = old
            self._hold(old)
            node = cluster.nodes[old]
            self.wiped.add(old)                 # the other faults take no memory from a voter until it is replaced
            node.kill()
            shutil.rmtree(node.data_dir, ignore_errors=True)       # a dead disk: never started again
            members = dict(cluster.nodes)
            members.pop(old)
            cluster.set_members(members, {**cluster.removed, old: node})
            record.injected = True
        new_id = self._join(record, table, deadline, replaces=old)
        lacked = self._lacks(new_id, deadline)
        change = self._until(lambda client: client.membership.replace(old, new_id), deadline)
        self._wait_adopted(change.epoch, deadline)
        self.wiped.discard(old)             # every group now votes on its replacement (nemesis seed 603)
        record.detail = "killed -9 and wiped; node %d took its place%s" % (new_id,
                                                                          self._check_filled(new_id, lacked, deadline))
