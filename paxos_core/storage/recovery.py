"""Rebuild every group's protocol state from its stored records.

One function for every storage backend (RocksDB in production, the simulator's disk in tests): it reads
``(key, value)`` pairs in key order and returns, per group, what the engine needs to resume.

Damaged records (bad checksum, torn, unknown version, wrong key) are reported and never used. Any damage
that may have lost a promise or a vote, and a pending REPAIR record (the worker found its storage damaged
or wiped), makes the group REPAIRING: it rebuilds from its peers before it votes again (the rebuild rule is
in core/engine.pyx and docs/architecture.md):

* a damaged record below the learned mark held a chosen value: the node re-learns it from its peers;
* a damaged record at or above the learned mark may have been a vote: the acceptor cannot know what it
  voted;
* a damaged promise record: the acceptor cannot know what it promised;
* a damaged truncation record: the values below it are gone here, so the group is REPAIRING and learns
  them again from its peers (a snapshot where their logs are truncated);
* a damaged GROUP record (its incarnation, or a first configuration that does not parse although its checksum
  holds) leaves unknown whether the log holds the group at all (hosted, handed over or removed), in which
  incarnation and on which first voters: the log as a whole cannot say what it holds. ``registry_damage``
  says so, and the caller sets the whole log aside as synced damage (runtime/worker.py ``start_loop``; the
  simulator the same way): every group rebuilds from its peers. A caller that does not gets the group
  STOPPED, with the reason;
* a chain that the records do not reproduce (a stored chain at a mark, or a CHAIN record) means the stored
  log is inconsistent: STOPPED;
* a damaged CHECKPOINT record (an incoming snapshot's progress) is reported in ``checkpoint_damaged``: the
  staging it described cannot be trusted and is discarded (the installed state needs nothing from it).

Besides the protocol state, each group reports what its log holds: ``low`` (records below it were
truncated), the value bytes learned below ``low`` and below ``chosen_next`` (the retention rule's byte count;
a count the LOW record does not know starts at 0), and its CHECKPOINT record.
"""
import logging
from dataclasses import dataclass, field

from ..errors import RecordCorrupt, UnknownVersion
from ..core.learner import chain_next
from ..core.voters import BadAdopt, first_config
from .records import (
    BYTES_UNKNOWN,
    CHAIN_RECORD,
    CHECKPOINT_RECORD,
    GROUP_RECORD,
    GROUP_REMOVED,
    GROUP_VACATED,
    REPAIR_REENTRY,
    INSTANCE_RECORD,
    LOW_RECORD,
    NODE_RECORD,
    PROMISE_RECORD,
    RECORD_CHOSEN,
    RECORD_VOID,
    REPAIR_PENDING,
    REPAIR_RECORD,
    decode_record,
    parse_key,
)

log = logging.getLogger("paxos_core.storage")

# Ballot under which a value known to be chosen is reported in a Promise: above every real ballot, so a
# proposer always re-proposes a chosen value rather than some older accepted one.
CHOSEN_BALLOT = (1 << 64) - 1


@dataclass
class RecoveredGroup:
    promised: int = 0            # highest promise found in any record
    top: int = 0                 # 1 + highest instance with a record
    accepted: list = field(default_factory=list)   # [(instance, ballot, value)] at instances >= chosen_next
    chosen_next: int = 0         # instances below are learned, and their values are on disk
    chain: int = 0               # checksum chain over the learned values
    known_mark: int = 0          # highest learned mark any record carried
    low: int = 0                 # records below were truncated
    low_bytes: int = 0           # value bytes learned below low (0 when the LOW record does not know)
    learned_bytes: int = 0       # value bytes learned below chosen_next (low_bytes + the values walked)
    config: bytes = b""          # the membership configuration state at low (LOW record; empty: the first one)
    adopts: list = field(default_factory=list)     # [(instance, ADOPT value)] learned in [low, chosen_next)
    checkpoint: tuple = None     # the CHECKPOINT record at instance 0 (a record tuple), None without one
    checkpoint_damaged: bool = False   # it was there and damaged: discard the staging it described
    repair_upto: int = 0         # the rebuild learns at least up to this instance (a known mark, a damaged vote)
    repair: bool = False         # promises or votes may be lost: rebuild from peers before voting again
    repair_reason: str = ""
    reenter_upto: int = 0        # held again after a handover: learn up to here before voting (no rebuild rule)
    incarnation: int = 1         # the group's incarnation (GROUP record; 1 when there is none)
    first: bytes = b""           # its first configuration (GROUP record; empty: the table's first one)
    stop_reason: str = ""        # non-empty: the group cannot be served
    corrupt: list = field(default_factory=list)    # [(instance or None, reason)]


@dataclass
class Recovery:
    groups: dict = field(default_factory=dict)      # group id -> RecoveredGroup
    node_id: int = 0
    cluster_id: int = 0
    corrupt_records: int = 0
    records: int = 0
    removed: dict = field(default_factory=dict)     # group id -> incarnation removed here (tombstones)
    joining: dict = field(default_factory=dict)     # group id -> (incarnation, first) a tombstone says it was
    #                                                 removed to take (ReplicaLoop.join_newer), not taken yet
    vacated: dict = field(default_factory=dict)     # group id -> (incarnation, chosen mark) handed over here
    vacated_first: dict = field(default_factory=dict)   # ... -> its first configuration, when not the table's
    amnesia: bool = False        # the log's synced state was damaged and replaced by an empty log
    registry_damage: str = ""    # a GROUP record is damaged: what this log holds is unknown (set it aside)
    report: str = ""             # then: one line on what was found and where the damaged log now is

    def problems(self):
        """[(group, instance, reason)] of every damaged record."""
        return [(g, i, why) for g, state in sorted(self.groups.items()) for i, why in state.corrupt]


class _GroupScan:
    __slots__ = ("promised", "low", "low_chain", "low_config", "low_bytes", "instances", "corrupt", "stop", "chains", "repair",
                 "incarnation", "first", "removed", "vacated", "group_mark", "reentry", "checkpoint",
                 "checkpoint_damaged")

    def __init__(self):
        self.incarnation = 1
        self.first = b""
        self.removed = False
        self.vacated = False
        self.group_mark = 0
        self.reentry = False
        self.promised = 0
        self.low = 0
        self.low_chain = 0
        self.low_config = b""
        self.low_bytes = 0
        self.checkpoint = None
        self.checkpoint_damaged = False
        self.instances = []     # decoded instance records, key order = instance order
        self.corrupt = []       # [(instance, reason)]
        self.stop = ""
        self.chains = {}        # instance -> chain recorded there (CHAIN records)
        self.repair = ""        # why the group must rebuild, if it must


def recover(items):
    """Scan ``(key, value)`` pairs (in key order) and rebuild the state of every group found."""
    result = Recovery()
    scans = {}
    for key, value in items:
        result.records += 1
        try:
            rtype, group, instance = parse_key(key)
        except RecordCorrupt as exc:
            result.corrupt_records += 1
            log.error("unreadable storage key %r: %s", bytes(key)[:16], exc)
            continue
        if rtype == NODE_RECORD:
            try:
                record = decode_record(key, value)
            except (RecordCorrupt, UnknownVersion) as exc:
                result.corrupt_records += 1
                log.error("node record damaged: %s", exc)
                continue
            result.node_id, result.cluster_id = record[1], record[2]
            continue
        scan = scans.get(group)
        if scan is None:
            scan = scans[group] = _GroupScan()
        try:
            record = decode_record(key, value)
            if rtype == GROUP_RECORD and record[8]:
                _check_first(record[8])
        except (RecordCorrupt, UnknownVersion) as exc:
            result.corrupt_records += 1
            if rtype == INSTANCE_RECORD:
                scan.corrupt.append((instance, str(exc)))
            elif rtype == LOW_RECORD:
                # The values below it are gone here, but they live in the peers' logs and checkpoints: the
                # group rebuilds (by snapshot or catch-up) before it votes again.
                scan.corrupt.append((None, "truncation record: %s" % exc))
                scan.repair = scan.repair or "the truncation record is damaged"
            elif rtype == CHAIN_RECORD:
                scan.corrupt.append((None, "chain record at %d: %s" % (instance, exc)))
            elif rtype == GROUP_RECORD:
                scan.corrupt.append((None, "group record: %s" % exc))
                scan.stop = "the group record (its incarnation and first configuration) is damaged: %s" % exc
                result.registry_damage = result.registry_damage or (
                    "group %d's GROUP record (whether this log holds the group, in which incarnation, on which "
                    "first voters) is damaged: %s" % (group, exc))
            elif rtype == CHECKPOINT_RECORD:
                scan.corrupt.append((None, "checkpoint record at %d: %s" % (instance, exc)))
                scan.checkpoint_damaged = True
            else:
                name = "promise" if rtype == PROMISE_RECORD else "repair"
                scan.corrupt.append((None, "%s record: %s" % (name, exc)))
                scan.repair = scan.repair or "the %s record is damaged" % name
            log.error("group %d: damaged record (type %d, instance %d): %s", group, rtype, instance, exc)
            continue
        if rtype == PROMISE_RECORD:
            scan.promised = max(scan.promised, record[4])
        elif rtype == LOW_RECORD:
            scan.low, scan.low_chain = record[6], record[7]
            scan.low_config = record[8]
            scan.low_bytes = 0 if record[5] == BYTES_UNKNOWN else record[5]
        elif rtype == CHECKPOINT_RECORD:
            if instance == 0:
                scan.checkpoint = record
        elif rtype == CHAIN_RECORD:
            scan.chains[record[2]] = record[7]
        elif rtype == GROUP_RECORD:
            scan.incarnation = record[4]
            scan.removed = bool(record[3] & GROUP_REMOVED)
            scan.vacated = bool(record[3] & GROUP_VACATED)
            scan.group_mark = record[5]
            scan.first = record[8]
        elif rtype == REPAIR_RECORD:
            if record[3] & REPAIR_PENDING and record[3] & REPAIR_REENTRY:
                scan.reentry = True
            elif record[3] & REPAIR_PENDING:
                scan.repair = scan.repair or "a rebuild from peers was pending"
        elif not record[3] & RECORD_VOID:
            scan.instances.append(record)
    for group in [g for g, scan in scans.items() if scan.removed]:
        scan = scans.pop(group)
        result.removed[group] = scan.incarnation
        if scan.group_mark:
            result.joining[group] = (scan.group_mark, scan.first)
    for group in [g for g, scan in scans.items() if scan.vacated]:
        # Handed over: whatever records of it survived a crash before their deletion are not its state (the
        # loop deletes them before it ever holds the group again).
        scan = scans.pop(group)
        result.vacated[group] = (scan.incarnation, scan.group_mark)
        if scan.first:
            result.vacated_first[group] = scan.first
    for group, scan in scans.items():
        result.groups[group] = _rebuild(group, scan)
    return result


def _check_first(first):
    """A GROUP record's first configuration that its checksum covers yet does not parse (a bug wrote it) makes
    the record damaged: who votes at the group's first instances is unknown here, so the group stops with a
    reason instead of failing the worker's start (finding 8's rule)."""
    try:
        first_config(first)
    except BadAdopt as exc:
        raise RecordCorrupt("its first configuration is not well formed: %s" % exc) from None


def _rebuild(group, scan):
    state = RecoveredGroup(promised=scan.promised, low=scan.low, corrupt=list(scan.corrupt), config=scan.low_config,
                           stop_reason=scan.stop, incarnation=scan.incarnation, first=scan.first,
                           low_bytes=scan.low_bytes,
                           checkpoint=scan.checkpoint, checkpoint_damaged=scan.checkpoint_damaged)
    by_instance = {}
    known_mark = scan.low
    marks = {}                                  # mark -> chain the writer recorded at that mark
    for rec in scan.instances:
        instance = rec[2]
        if instance < scan.low:
            continue                            # left over from a truncation
        by_instance[instance] = rec
        state.promised = max(state.promised, rec[4])
        state.top = max(state.top, instance + 1)
        mark = rec[6]
        if mark > known_mark:
            known_mark = mark
        if mark > scan.low:
            marks[mark] = rec[7]
    # A CHAIN record says every instance below it was learned (written with the chain over them: every 64
    # instances, and at the mark a node reports to a peer's STATE_REQ, core/engine.pyx _on_state_req).
    for at in scan.chains:
        if at > known_mark:
            known_mark = at
    state.top = max(state.top, scan.low)
    # Walk the learned prefix: every instance below the highest mark was chosen, and our record holds it.
    chain = scan.low_chain
    instance = scan.low
    learned_bytes = scan.low_bytes
    chains = scan.chains
    while True:
        expected = marks.get(instance)
        if expected is None:
            expected = chains.get(instance)
        if expected is not None and expected != chain and not state.stop_reason:
            state.stop_reason = "stored chain at instance %d is %08x but the records give %08x" % (
                instance, expected, chain)
        if instance >= known_mark:
            break
        rec = by_instance.get(instance)
        if rec is None:
            break
        chain = chain_next(chain, instance, rec[8])
        learned_bytes += len(rec[8])
        if rec[8][:1] == b"\xc0":
            state.adopts.append((instance, rec[8]))     # membership: the engine replays it (core/voters.pyx)
        instance += 1
    state.chosen_next = instance
    state.learned_bytes = learned_bytes
    state.chain = chain
    state.known_mark = known_mark
    for inst, rec in sorted(by_instance.items()):
        if inst < instance:
            continue
        ballot = CHOSEN_BALLOT if rec[3] & RECORD_CHOSEN else rec[5]
        state.accepted.append((inst, ballot, rec[8]))
    repair = 0
    reason = scan.repair
    if instance < known_mark:
        repair = known_mark
        reason = reason or "records below the learned mark %d are missing or damaged" % known_mark
    for inst, _ in scan.corrupt:
        if inst is not None and inst >= instance:
            repair = max(repair, inst + 1)
            reason = reason or "a record at or above the learned mark is damaged (maybe a vote)"
    if scan.reentry and not scan.repair:
        # Held again after a handover and still learning: this node has voted for nothing since (it votes only
        # once it learned up to the mark), so what is missing or damaged here is a learned value, learned again.
        state.reenter_upto = max(scan.group_mark, repair, known_mark)
        repair = 0
        reason = ""
    state.repair_upto = repair
    state.repair = bool(reason)
    state.repair_reason = reason
    if state.repair:
        log.warning("group %d must rebuild from its peers before it votes again: %s (learned up to %d)",
                    group, reason, instance)
    return state
