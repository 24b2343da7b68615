"""Build small RocksDB images and damage them in chosen places (tests/test_storage_damage.py, tools/).

An image is made by writing synced WriteBatches into an open DB and copying its directory while it is still
open: the copy is what a crash right after the last synced write leaves on disk (no close, no flush on
close). Batch ``b`` holds the keys ``batch_keys(b)``; ``batches_present`` tells which batches a reopened DB
holds, and whether any batch came back in part.

WAL format (RocksDB, not recycled): 32 KiB blocks; each physical record is crc32c u32 | length u16 |
type u8 | payload, and never crosses a block; a block tail shorter than a header is zero padding.
"""
import glob
import os
import shutil

import rocksdict

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
KEYS_PER_BATCH = 4
VALUE_BYTES = 100


def batch_keys(batch):
    return [b"G%05d/%d" % (batch, k) for k in range(KEYS_PER_BATCH)]    # "G": before the node record


def batch_value(batch, k):
    return (b"%05d-%d-" % (batch, k) * 20)[:VALUE_BYTES]


def open_options(mode=None, create=True):
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(create)
    opts.create_missing_column_families(True)
    opts.set_paranoid_checks(True)
    if mode is not None:
        opts.set_wal_recovery_mode(mode)
    return opts


def write_batches(db, first, end):
    write_opts = rocksdict.WriteOptions()
    write_opts.sync = True
    for b in range(first, end):
        wb = rocksdict.WriteBatch(raw_mode=True)
        for k, key in enumerate(batch_keys(b)):
            wb.put(key, batch_value(b, k))
        db.write(wb, write_opts)


def crash_copy(src, dest):
    """Copy an open DB's directory as a crash would leave it. A file that vanishes meanwhile was being
    deleted as obsolete by RocksDB (an old WAL after a flush): a crash could have left it gone too."""
    os.makedirs(dest)
    for name in sorted(os.listdir(src)):
        try:
            shutil.copy2(os.path.join(src, name), os.path.join(dest, name))
        except FileNotFoundError:
            pass
    return str(dest)


def make_image(dest, batches=40, flush_at=(), db=None):
    """Write `batches` synced batches, flushing the memtable into an SST after each batch count in
    `flush_at`, and copy the DB directory to `dest` as a crash would leave it. `db` None: a scratch DB."""
    own = db is None
    if own:
        db = rocksdict.Rdict(str(dest) + ".src", open_options())
    done = 0
    for mark in sorted(flush_at):
        write_batches(db, done, mark)
        db.flush(True)
        done = mark
    write_batches(db, done, batches)
    scratch = db.path()
    crash_copy(scratch, dest)
    if own:
        db.close()
        del db
        shutil.rmtree(scratch, ignore_errors=True)
    return str(dest)


def make_two_wal_image(dest, batches=40):
    """Like make_image, with a second column family "sm" that gets one key per batch. After the first half,
    only the default family is flushed: RocksDB starts a second WAL and keeps the first (it still holds "sm"
    data), as it does for the log's DB whenever one family is flushed before the other."""
    scratch = str(dest) + ".src"
    families = {"sm": rocksdict.Options(raw_mode=True)}
    db = rocksdict.Rdict(scratch, open_options(), column_families=families)
    sm = db.get_column_family_handle("sm")
    write_opts = rocksdict.WriteOptions()
    write_opts.sync = True
    for b in range(batches):
        if b == batches // 2:
            db.flush(True)
        wb = rocksdict.WriteBatch(raw_mode=True)
        for k, key in enumerate(batch_keys(b)):
            wb.put(key, batch_value(b, k))
        wb.put(batch_keys(b)[0], batch_value(b, 0), sm)
        db.write(wb, write_opts)
    crash_copy(scratch, dest)
    del sm
    db.close()
    del db
    shutil.rmtree(scratch, ignore_errors=True)
    return str(dest)


def batches_present(db, batches):
    """(complete batch numbers, partly present batch numbers)."""
    complete, partial = [], []
    for b in range(batches):
        found = [db.get(key) == batch_value(b, k) for k, key in enumerate(batch_keys(b))]
        if all(found):
            complete.append(b)
        elif any(found):
            partial.append(b)
    return complete, partial


# ------------------------------------------------------------------------------------------------- files

def files(path, pattern):
    return sorted(glob.glob(os.path.join(path, pattern)))


def live_wal(path):
    """The newest WAL file (highest number) of a DB directory."""
    wals = files(path, "*.log")
    assert wals, "no WAL in %s" % path
    return max(wals, key=lambda p: int(os.path.basename(p).split(".")[0]))


def wal_records(wal):
    """[(offset, payload length, type)] of every physical record of a WAL file, in order."""
    with open(wal, "rb") as f:
        data = f.read()
    out = []
    pos = 0
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:
            pos += room
            continue
        length = data[pos + 4] | data[pos + 5] << 8
        rtype = data[pos + 6]
        if rtype == 0 and length == 0:
            break
        out.append((pos, length, rtype))
        pos += HEADER + length
    return out


def data_records(wal):
    """The WAL records that carry write batches (full or first fragments), skipping metadata records."""
    return [r for r in wal_records(wal) if r[2] in (FULL, FIRST)]


def flip_bit(path, offset, bit=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def truncate_to(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


# ------------------------------------------------------------------------------------------------- damage

def cut_last_record(db_path):
    """(a) The last WAL record cut short: the file ends in the middle of its payload."""
    wal = live_wal(db_path)
    offset, length, _ = wal_records(wal)[-1]
    truncate_to(wal, offset + HEADER + length // 2)


def cut_last_header(db_path):
    """(a') The file ends inside the last record's header."""
    wal = live_wal(db_path)
    offset, _, _ = wal_records(wal)[-1]
    truncate_to(wal, offset + 3)


def append_zeros(db_path, n=4096):
    """(b) Zeros after the last record (a file extended but never written, or preallocated)."""
    append(live_wal(db_path), bytes(n))


def append_garbage(db_path, n=200):
    """(b') Garbage after the last record."""
    append(live_wal(db_path), bytes((i * 73 + 41) % 251 for i in range(n)))


def append_forged_header(db_path):
    """(b") After the last record, a header whose length fits in the file, and a payload that does not match
    its checksum: what a torn write looks like if the file grew but the payload pages were not written."""
    wal = live_wal(db_path)
    payload = bytes(60)
    append(wal, b"\x11\x22\x33\x44" + len(payload).to_bytes(2, "little") + bytes([FULL]) + payload)


def cut_older_wal(db_path):
    """(h) The last record of an OLDER WAL cut short, the newest WAL intact (images from make_two_wal_image)."""
    wals = files(db_path, "*.log")
    assert len(wals) >= 2, "one WAL only: %s" % wals
    older = min(wals, key=lambda p: int(os.path.basename(p).split(".")[0]))
    offset, length, _ = wal_records(older)[-1]
    truncate_to(older, offset + HEADER + length // 2)


def cut_older_wal_newer_never_written(db_path):
    """(h') The older WAL's last record cut short and the newer WAL empty: the tear is the last thing written
    (two-WAL images)."""
    cut_older_wal(db_path)
    truncate_to(live_wal(db_path), 0)


def flip_in_last_record(db_path):
    """(c) One bit flipped in the payload of the last complete WAL record."""
    wal = live_wal(db_path)
    offset, length, _ = data_records(wal)[-1]
    flip_bit(wal, offset + HEADER + length - 3)


def flip_type_to_recyclable(db_path, which="middle"):
    """(d') Bit 2 of the type byte of a FULL WAL record flipped ("first", "middle" or "last" data record):
    type 1 becomes 5, a recyclable FULL record, in a log never written that way. RocksDB 9.8.4's open then
    spins for ever (middle, last) or stops reading there and reports nothing (first)."""
    wal = live_wal(db_path)
    records = [r for r in data_records(wal) if r[2] == FULL]
    offset, _, _ = records[{"first": 0, "middle": len(records) // 2, "last": -1}[which]]
    flip_bit(wal, offset + 6, 2)


def flip_type_in_manifest(db_path):
    """(g6) The same flip in the type byte of the MANIFEST's last record: RocksDB 9.8.4's open spins for ever."""
    path = manifest(db_path)
    offset, _, _ = wal_records(path)[-1]
    flip_bit(path, offset + 6, 2)


def masked_crc(rtype, payload):
    """The checksum field of a record, as RocksDB writes it (crc32c of type and payload, masked)."""
    from paxos_core.wire.checksum import crc32c
    crc = crc32c(bytes([rtype]) + payload)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record_bytes(rtype, payload):
    """One physical record with a correct checksum."""
    return masked_crc(rtype, payload).to_bytes(4, "little") + len(payload).to_bytes(2, "little") + \
        bytes([rtype]) + payload


def flip_in_middle_record(db_path):
    """(d) One bit flipped in the payload of a WAL record in the middle."""
    wal = live_wal(db_path)
    records = data_records(wal)
    offset, length, _ = records[len(records) // 2]
    flip_bit(wal, offset + HEADER + length - 3)


def sst_files(db_path):
    return files(db_path, "*.sst")


def flip_in_sst_at(db_path, offset):
    """One bit flipped at `offset` of the (first) SST."""
    flip_bit(sst_files(db_path)[0], offset)


def flip_in_sst_data_block(db_path):
    """(e) One bit flipped in the first data block of the (first) SST: found when the block is read."""
    flip_in_sst_at(db_path, 200)


def flip_in_sst_footer(db_path):
    """(e') One bit flipped in the SST's footer, which is read when the table is opened."""
    sst = sst_files(db_path)[0]
    flip_bit(sst, os.path.getsize(sst) - 20)


def delete_sst(db_path):
    """(f) An SST file lost."""
    os.unlink(sst_files(db_path)[0])


def delete_current(db_path):
    """(g) CURRENT lost."""
    os.unlink(os.path.join(db_path, "CURRENT"))


def delete_current_and_wals(db_path):
    """(g5) CURRENT and every WAL lost, the SSTs left: RocksDB would create a new DB over them."""
    delete_current(db_path)
    for wal in files(db_path, "*.log"):
        os.unlink(wal)


def garble_current(db_path):
    """(g') CURRENT names a MANIFEST that does not exist."""
    with open(os.path.join(db_path, "CURRENT"), "w") as f:
        f.write("MANIFEST-999999\n")


def manifest(db_path):
    with open(os.path.join(db_path, "CURRENT")) as f:
        return os.path.join(db_path, f.read().strip())


def flip_in_manifest(db_path):
    """(g") One bit flipped in the first record of the MANIFEST."""
    path = manifest(db_path)
    offset, length, _ = wal_records(path)[0]
    flip_bit(path, offset + HEADER + length // 2)


def cut_manifest_tail(db_path):
    """(g3) The MANIFEST's last record cut short."""
    path = manifest(db_path)
    offset, length, _ = wal_records(path)[-1]
    truncate_to(path, offset + HEADER + length // 2)


def cut_manifest_flush_edit(db_path):
    """(g4) The MANIFEST cut short inside the edit that added the last flush's SST (its WAL is gone
    already): RocksDB drops the edit silently, and with it the SST's data. Images with two flushes and no
    open since: the MANIFEST's last two records are that edit and a small one after it."""
    path = manifest(db_path)
    offset, length, _ = wal_records(path)[-2]
    truncate_to(path, offset + HEADER + length // 2)
