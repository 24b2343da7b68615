"""What one worker's log holds on disk, read only: each group's recovered state, or every record.

    python tools/inspect_log.py DATA_DIR/worker-I [--records [--group G]] [--json]

Opens the worker's RocksDB read only (nothing is written; stop the node first for a view that does not
move) and hands its records to paxos_core.storage.recovery.recover, the function a worker runs at start.
Prints the node and cluster ids, then per group: incarnation, promise, learned mark (every instance below it
chosen), highest instance, truncation mark, whether it would rebuild from its peers or stay stopped (and
why), and its damaged records. --records lists the decoded records instead (type, group, instance, ballots,
mark, value size; a group record's incarnation is in its `promised` slot). Runs against whatever
`paxos_core` is importable (PYTHONPATH picks a checkout).
"""
import argparse
import json
import sys

import rocksdict

from paxos_core.errors import RecordCorrupt, UnknownVersion
from paxos_core.storage import records
from paxos_core.storage.log import _scan
from paxos_core.storage.recovery import recover

TYPE_NAMES = {getattr(records, name): name.replace("_RECORD", "").lower() for name in dir(records)
              if name.endswith("_RECORD") and isinstance(getattr(records, name), int)}


def read_items(path):
    """Every (key, value) in key order, and the error that stopped the scan early (None if it did not)."""
    db = rocksdict.Rdict(path, rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only())
    items, error = [], None
    try:
        for item in _scan(db, fill_cache=False):
            items.append(item)
    except Exception as exc:                      # damaged blocks: report how far the scan got
        error = "the scan stopped after %d records: %s" % (len(items), exc)
    db.close()
    return items, error


def record_rows(items, group=None):
    for key, value in items:
        try:
            kind, g, instance, flags, promised, ballot, mark, chain, payload = records.decode_record(key, value)
        except (RecordCorrupt, UnknownVersion) as exc:
            yield {"key": key.hex(), "damaged": str(exc)}
            continue
        if kind == records.NODE_RECORD:           # node id and cluster id ride in the group and instance slots
            if group is None:
                yield {"type": "node", "node": g, "cluster": instance}
            continue
        if group is not None and g != group:
            continue
        yield {"type": TYPE_NAMES.get(kind, kind), "group": g, "instance": instance, "flags": flags,
               "promised": promised, "ballot": ballot, "mark": mark, "chain": chain,
               "value_bytes": len(payload) if payload is not None else 0}


def group_rows(recovery):
    for g, s in sorted(recovery.groups.items()):
        state = "stopped" if s.stop_reason else ("repairing" if s.repair else "ok")
        yield {"group": g, "incarnation": s.incarnation, "promised": s.promised, "learned": s.chosen_next,
               "top": s.top, "low": s.low, "state": state, "why": s.stop_reason or s.repair_reason,
               "accepted_above_mark": len(s.accepted), "damaged": [list(c) for c in s.corrupt]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="a worker's RocksDB directory: <data_dir>/worker-<i>")
    p.add_argument("--records", action="store_true", help="list the decoded records instead")
    p.add_argument("--group", type=int, default=None, help="with --records: only this group's")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    args = p.parse_args(argv)
    try:
        items, error = read_items(args.path)
    except Exception as exc:
        print("inspect_log: cannot open %s read only: %s" % (args.path, " ".join(str(exc).split())),
              file=sys.stderr)
        return 2
    if args.records:
        rows = list(record_rows(items, args.group))
        doc = {"records": rows, "scan_error": error}
    else:
        recovery = recover(items)
        rows = list(group_rows(recovery))
        doc = {"node": recovery.node_id, "cluster": recovery.cluster_id, "records": recovery.records,
               "damaged_records": recovery.corrupt_records, "removed_groups": recovery.removed,
               "groups": rows, "scan_error": error}
    if args.json:
        print(json.dumps(doc))
        return 0
    if not args.records:
        print("node %d of cluster %d: %d records, %d damaged; groups removed here: %s"
              % (doc["node"], doc["cluster"], doc["records"], doc["damaged_records"], doc["removed_groups"] or "none"))
    for row in rows:
        print("  " + " ".join("%s=%s" % kv for kv in row.items()))
    if error:
        print("DAMAGE: " + error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
