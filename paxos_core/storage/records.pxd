from libc.stdint cimport uint8_t, uint32_t, uint64_t

cpdef enum RecordType:
    PROMISE_RECORD = 0      # per group: the acceptor's promise
    INSTANCE_RECORD = 1     # per (group, instance): what the acceptor accepted, or the chosen value
    LOW_RECORD = 2          # per group: records below `low` were truncated; the chain at `low`
    NODE_RECORD = 3         # per node: node id, cluster id, storage format
    CHAIN_RECORD = 4        # per (group, instance multiple of CHAIN_EVERY): the chain over the values below it
    REPAIR_RECORD = 5       # per group: the group lost (or may have lost) synced state and must rebuild
    GROUP_RECORD = 6        # per group: its incarnation; with GROUP_REMOVED, the tombstone of a removed one
    CHECKPOINT_RECORD = 7   # per group: instance 0, an incoming snapshot's progress or the installed
                            # checkpoint's metadata; instances > 0, staged pieces of a blob snapshot

cpdef enum RecordFlag:
    RECORD_CHOSEN = 1       # the value is known chosen (learned by catch-up)
    RECORD_VOID = 2         # no vote here: written over a damaged vote once the group has rebuilt
    REPAIR_PENDING = 1      # REPAIR_RECORD flag: the rebuild has not finished
    REPAIR_REENTRY = 2      # REPAIR_RECORD flag: not a loss of memory: the group is held again after this node
                            # handed it over; it learns up to the GROUP record's mark before it votes
    GROUP_REMOVED = 1       # GROUP_RECORD flag: the incarnation was removed here (a re-add must be newer)
    GROUP_VACATED = 2       # GROUP_RECORD flag: this node handed the group over (placed elsewhere): not held here;
                            # placed here again, it comes back in the same incarnation and rebuilds first

# Every CHAIN_EVERY instances a learner records its chain, so a catch-up reply that ends there can carry the
# sender's chain at its end (see core/engine.pyx, _serve).
cdef enum:
    CHAIN_EVERY = 64


cpdef bytes group_key(int rtype, uint32_t group, uint64_t instance)
cpdef tuple encode_record(tuple record)
