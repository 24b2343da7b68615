from libc.stdint cimport uint8_t, uint32_t, uint64_t

cpdef enum RecordType:
    PROMISE_RECORD = 0      # per group: the acceptor's promise
    INSTANCE_RECORD = 1     # per (group, instance): what the acceptor accepted, or the chosen value
    LOW_RECORD = 2          # per group: records below `low` were truncated; the chain at `low`
    NODE_RECORD = 3         # per node: node id, cluster id, storage format

cpdef enum RecordFlag:
    RECORD_CHOSEN = 1       # the value is known chosen (learned by catch-up)

cpdef bytes group_key(int rtype, uint32_t group, uint64_t instance)
cpdef tuple encode_record(tuple record)
