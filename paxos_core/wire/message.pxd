from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

# Message kinds (the wire value of Message.kind).
cpdef enum Kind:
    PREPARE = 1        # proposer -> acceptors: promise `ballot` for every instance >= `instance`
    PROMISE = 2        # acceptor -> proposer: promised `ballot`; aux = acceptor's chosen-next; value = entries
    ACCEPT = 3         # proposer -> acceptors: accept `value` at (`instance`, `ballot`)
    ACCEPTED = 4       # acceptor -> proposer: accepted (`instance`, `ballot`)
    REJECT = 5         # acceptor -> proposer: `ballot` is the higher promise; aux = the rejected ballot;
                       # mark/chain = the acceptor's own
    CHOSEN = 6         # proposer -> learners: every instance < `mark` is chosen (ballot = sender's ballot)
    CATCHUP_REQ = 7    # learner -> peer: send chosen values from `instance`; aux = how many at most
    CATCHUP_REPLY = 8  # peer -> learner: value = entries of chosen values starting at `instance`
    FORWARD = 9        # non-leader -> leader: value = a batch of proposals to put in the log
    STATE_REQ = 10     # repairing node -> peers: what is your promise, your top instance, your chosen-next?
    STATE_REPLY = 11   # peer -> repairing node: ballot = promise, instance = top, mark = chosen-next,
                       # aux = 1 if the replier is repairing itself (its answer does not count)
    # Snapshot transfer (replica/snapshots.py; the engine hands these to the loop untouched, in
    # Effects.foreign). A = the snapshot's applied instance, id = the sender's snapshot id.
    SNAP_OFFER = 12    # holder -> lagging peer: instance = A, ballot = id, mark = stream bytes, aux = the
                       # sender's low, chain = the chain at A; value = the stream's first chunk (or all of it,
                       # with FLAG_LAST)
    SNAP_REQ = 13      # receiver -> holder: instance = A, ballot = id, mark = next offset wanted, aux = bytes
                       # of credit beyond it (0: cancel)
    SNAP_CHUNK = 14    # holder -> receiver: instance = A, ballot = id, mark = offset, chain = crc32c(value);
                       # with FLAG_LAST the stream's last chunk, aux = stream bytes
    SNAP_ABORT = 15    # either way: instance = A, ballot = id, aux = reason (replica/snapshots.py)
    INC_NOTICE = 16    # between holders of different incarnations of a group id: the sender holds `inc`;
                       # from the newer one, value = its first configuration (core/voters.pyx config state,
                       # empty: the table's first); from the older one, empty: it asks for that
                       # (Engine._on_other_incarnation)
    KIND_MAX = 16

# Message flags.
cpdef enum MessageFlag:
    FLAG_NONE = 0
    FLAG_RESIGN = 1    # on CHOSEN: the sender stops leading (another node is the group's master); acceptors
                       # stop holding their promise to it (no stickiness)
    FLAG_STICKY = 2    # on REJECT: refused because the acceptor's leader is active (not a higher ballot);
                       # the proposer backs off and forwards to that leader
    FLAG_LAST = 4      # on SNAP_OFFER and SNAP_CHUNK: the snapshot stream ends with this chunk

cdef class Message:
    cdef public uint8_t kind
    cdef public uint8_t flags
    cdef public uint16_t src       # sending node id (filled from the frame header on decode)
    cdef public uint16_t inc       # the group's incarnation: a message for another incarnation is dropped
    cdef public uint32_t group     # global group id
    cdef public uint64_t instance
    cdef public uint64_t ballot
    cdef public uint64_t mark      # the sender's "chosen up to" mark: every instance < mark is chosen
    cdef public uint64_t aux       # kind-specific number (see Kind)
    cdef public uint32_t chain     # the sender's checksum chain over chosen values < mark
    cdef public bytes value

cdef Message make_message(uint8_t kind, uint32_t group, uint64_t instance, uint64_t ballot,
                          uint64_t mark, uint64_t aux, uint32_t chain, bytes value)
