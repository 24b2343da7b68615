from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t

cpdef enum ProposerRole:
    FOLLOWER = 0
    PREPARING = 1
    LEADING = 2

cdef class InFlight:
    cdef public bytes value
    cdef public uint64_t votes         # bit per member index
    cdef public int64_t sent_at
    cdef public int64_t first_sent     # votes count only within vote_ttl of this tick (see engine: rebuild rule)
    cdef public int retries

cdef class ProposerGroup:
    cdef public list pending           # [(origin, seq, payload)] waiting for an instance
    cdef public Py_ssize_t pending_bytes
    cdef public dict inflight          # instance -> InFlight
    cdef public dict promises          # node -> (acceptor chosen-next, entries) while preparing
    cdef public uint64_t prepare_from
    cdef public int64_t prepare_started  # promises count only within vote_ttl of this tick
    cdef public int retries
    cdef public list forwarded         # [(origin, seq, payload)] sent to the leader, not yet seen chosen
    cdef public int64_t forwarded_at
    cdef public uint64_t sticky_refusals   # members (bit = member index) whose acceptor refused this Prepare
                                           # because it still hears its leader (the sticky rule)
    cdef public dict reproposals       # instance -> value a promise reported, to re-propose once the window
    cdef public uint64_t repropose_top # reaches it; every instance below repropose_top is re-proposed (a value
                                       # reported or a no-op) before any new proposal (0: none left)
    cdef public dict peer_marks        # node -> (its chosen mark, tick heard) while we lead (the peers' floor)
    cdef public int64_t floor_since    # tick of the first floor computed with this object (-1: none yet)

cdef class ProposerState:
    cdef public object ballot_array        # numpy uint64: our ballot per slot (0 = none)
    cdef uint64_t[::1] ballot
    cdef public object role_array          # numpy uint8: FOLLOWER / PREPARING / LEADING
    cdef uint8_t[::1] role
    cdef public object next_instance_array # numpy uint64: next instance a leader assigns
    cdef uint64_t[::1] next_instance
    cdef public object seen_round_array    # numpy uint64: highest ballot round seen anywhere
    cdef uint64_t[::1] seen_round
    cdef public object timer_array         # numpy int64: tick when the proposer next has to act
    cdef int64_t[::1] timer
    cdef public object mark_sent_array     # numpy uint64: highest chosen mark sent to the learners
    cdef uint64_t[::1] mark_sent
    cdef public object mark_notices_array  # numpy uint8: idle CHOSEN notices sent for that mark (a lost one is
    cdef uint8_t[::1] mark_notices         # sent once more, later; then the group is quiet)
    cdef public object leader_heard_array  # numpy int64: tick we last heard from the promised leader
    cdef int64_t[::1] leader_heard
    cdef public object last_accept_array   # numpy int64: tick a leader last sent an Accept
    cdef int64_t[::1] last_accept
    cdef public object accept_heard_array  # numpy int64: tick our acceptor last took an Accept (or Chosen) from
    cdef int64_t[::1] accept_heard         # its promised leader: it refuses other Prepares for sticky_ticks
    cdef public object preferred_array     # numpy uint16: the node that should lead (the group's live master),
    cdef uint16_t[::1] preferred           # 0 = none known (any node may try)
    cdef public dict groups                # slot -> ProposerGroup, only while the group has proposer work

    cdef ProposerGroup group(self, Py_ssize_t slot)
