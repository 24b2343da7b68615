"""What each RocksDB WAL recovery mode, and RocksLog, does with each kind of on-disk damage.

    PYTHONPATH=. python tools/rocksdb_damage_probe.py [--batches N] [--workdir DIR]

For every damage case (tests/helpers/rocks_damage.py) and every DBRecoveryMode, a fresh copy of a small DB
(N synced WriteBatches of 4 keys, rocksdict raw mode) is damaged and opened. The SST cases flush the first
half into an SST first (g4: two flushes); case h uses two column families and two WAL files. Each line says
whether the open failed (and RocksDB's message) or never returned (each trial runs in a child, killed after
20 s), how many batches came back, whether any came back in part, and whether a full iteration then failed
(checked with the iterator's status: rocksdict's items() ends silently at a damaged block). The last line of each case is what RocksLog makes of it. The findings are
summarised in the module docstring of paxos_core/storage/log.pyx.
"""
import argparse
import functools
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile

import rocksdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "helpers"))
import rocks_damage as rd  # noqa: E402

MODES = {
    "absolute": rocksdict.DBRecoveryMode.absolute_consistency,
    "tolerate-tail": rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records,
    "point-in-time": rocksdict.DBRecoveryMode.point_in_time,
    "skip-any": rocksdict.DBRecoveryMode.skip_any_corrupted_record,
}

# case -> (damage function, image: "wal" = nothing flushed, "sst" = first half flushed, "two-sst" = first
# and second quarter flushed, "two-wal" = two WAL files, see rd.make_two_wal_image)
CASES = {
    "a  WAL last record cut short": (rd.cut_last_record, "wal"),
    "a' WAL cut inside last header": (rd.cut_last_header, "wal"),
    "b  zeros appended": (rd.append_zeros, "wal"),
    "b' garbage appended": (rd.append_garbage, "wal"),
    'b" full-length record, bad crc': (rd.append_forged_header, "wal"),
    "c  bit flip, last record": (rd.flip_in_last_record, "wal"),
    "d  bit flip, middle record": (rd.flip_in_middle_record, "wal"),
    "d' type byte 1->5, first record": (functools.partial(rd.flip_type_to_recyclable, which="first"), "wal"),
    'd" type byte 1->5, middle record': (functools.partial(rd.flip_type_to_recyclable, which="middle"), "wal"),
    'd" type byte 1->5, last record': (functools.partial(rd.flip_type_to_recyclable, which="last"), "wal"),
    "e  bit flip, SST data block": (rd.flip_in_sst_data_block, "sst"),
    "e' bit flip, SST footer": (rd.flip_in_sst_footer, "sst"),
    "f  SST deleted": (rd.delete_sst, "sst"),
    "g  CURRENT deleted": (rd.delete_current, "sst"),
    "g5 CURRENT and every WAL lost": (rd.delete_current_and_wals, "sst"),
    "g' CURRENT names no file": (rd.garble_current, "sst"),
    'g" MANIFEST bit flip': (rd.flip_in_manifest, "sst"),
    "g3 MANIFEST last record cut": (rd.cut_manifest_tail, "sst"),
    "g4 MANIFEST cut in a flush edit": (rd.cut_manifest_flush_edit, "two-sst"),
    "g6 MANIFEST type byte 1->5, last record": (rd.flip_type_in_manifest, "sst"),
    "h  older WAL cut short": (rd.cut_older_wal, "two-wal"),
    "h' older WAL cut short, newer empty": (rd.cut_older_wal_newer_never_written, "two-wal"),
}


def short(exc, width=100):
    text = " ".join(str(exc).split())
    return text if len(text) < width else text[:width - 3] + "..."


def _ranges(numbers):
    out = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in out)


def _full_scan(db):
    it = db.iter()
    it.seek_to_first()
    n = 0
    while it.valid():
        n += 1
        it.next()
    try:
        it.status()
    except Exception as exc:
        return "SCAN FAILS after %d keys: %s" % (n, short(exc, 60))
    return "scan ok"


def trial(image, path, damage, mode, batches):
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(image, path)
    damage(path)
    try:
        db = rocksdict.Rdict(path, rd.open_options(MODES[mode]()),
                             column_families={"sm": rocksdict.Options(raw_mode=True)})
    except Exception as exc:  # rocksdict raises plain Exception
        return "OPEN FAILS: " + short(exc)
    sm = db.get_column_family("sm")
    try:
        try:
            complete, partial = rd.batches_present(db, batches)
        except Exception as exc:
            return "opens; GET FAILS: %s; %s" % (short(exc, 60), _full_scan(db))
        missing = sorted(set(range(batches)) - set(complete) - set(partial))
        found = "batches %d/%d" % (len(complete), batches)
        if missing:
            found += ", missing %s" % _ranges(missing)
        if partial:
            found += ", PARTIAL %s" % _ranges(partial)
        if image.endswith("two-wal"):
            holes = [b for b in range(batches) if b not in missing and sm.get(rd.batch_keys(b)[0]) is None]
            if holes:
                found += ", HOLE: sm key of %s missing" % _ranges(holes)
        return "opens; %s; %s" % (found, _full_scan(db))
    finally:
        del sm
        db.close()
        del db


def rockslog_trial(image, path, damage):
    from paxos_core.storage.log import RocksLog

    logging.getLogger("paxos_core").setLevel(logging.CRITICAL)     # the probe's keys are not log records

    shutil.rmtree(path, ignore_errors=True)
    for leftover in rd.files(os.path.dirname(path), os.path.basename(path) + ".damaged-*"):
        shutil.rmtree(leftover)
    shutil.copytree(image, path)
    damage(path)
    try:
        log = RocksLog(path, 1, 1)
    except Exception as exc:
        return "RAISES: " + short(exc)
    try:
        at_open = "damage=%s amnesia=%s" % (log.damage, log.amnesia)
        recovery = log.recover()
        return "%s; recover(): amnesia=%s, %d records" % (at_open, recovery.amnesia, recovery.records)
    finally:
        log.close()


def bounded(fn, *args, seconds=20):
    """fn(*args) in a child process, so that an open that never returns (d') is reported, not waited on.
    (Spawned, not forked: a forked child can inherit a lock some RocksDB thread of the parent held.)"""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply_async(fn, args)
        try:
            return result.get(seconds)
        except multiprocessing.TimeoutError:
            return "OPEN HANGS (no answer in %d s; the child is killed)" % seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="rocksdb-damage-", dir=args.workdir)
    try:
        images = {
            "wal": rd.make_image(os.path.join(work, "image-wal"), args.batches),
            "sst": rd.make_image(os.path.join(work, "image-sst"), args.batches, flush_at=[args.batches // 2]),
            "two-sst": rd.make_image(os.path.join(work, "image-two-sst"), args.batches,
                                     flush_at=[args.batches // 4, args.batches // 2]),
            "two-wal": rd.make_two_wal_image(os.path.join(work, "image-two-wal"), args.batches),
        }
        trial_path = os.path.join(work, "trial")
        for case, (damage, image) in CASES.items():
            print(case)
            for mode in MODES:
                print("    %-14s %s" % (mode, bounded(trial, images[image], trial_path, damage, mode, args.batches)))
            print("    %-14s %s" % ("RocksLog", bounded(rockslog_trial, images[image], trial_path, damage)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
