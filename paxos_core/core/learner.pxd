from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef uint32_t chain_step(uint32_t chain, uint64_t instance, bytes value)

cdef class LearnerState:
    cdef public object chosen_next_array    # numpy uint64: every instance below it is learned, per slot
    cdef uint64_t[::1] chosen_next
    cdef public object chain_array          # numpy uint32: checksum chain over the learned values
    cdef uint32_t[::1] chain
    cdef public object known_mark_array     # numpy uint64: highest chosen mark heard from anyone
    cdef uint64_t[::1] known_mark
    cdef public object repair_upto_array    # numpy uint64: acceptor suspended until chosen_next reaches it
    cdef uint64_t[::1] repair_upto
    cdef public object catchup_at_array     # numpy int64: tick of the last catch-up request
    cdef int64_t[::1] catchup_at
    cdef public object catchup_src_array    # numpy int32: the node to ask for missing chosen values
    cdef int[::1] catchup_src
    cdef public object low_array            # numpy uint64: the log holds no record below it (truncated)
    cdef uint64_t[::1] low
    cdef public object learned_bytes_array  # numpy uint64: value bytes learned below chosen_next
    cdef uint64_t[::1] learned_bytes
    cdef public object low_bytes_array      # numpy uint64: value bytes below low (0 where the LOW record did not say)
    cdef uint64_t[::1] low_bytes
    cdef public object peer_floor_array     # numpy uint64: the lowest chosen mark a live peer still needs, as the
    cdef uint64_t[::1] peer_floor           # leader last said (0 = not known); retention keeps the log above it
    cdef public dict decided                # slot -> {instance: value} chosen but not yet contiguous
    cdef public dict outstanding            # slot -> {seq: [tag, deadline]} proposals made on this node

    cdef uint32_t advance(self, Py_ssize_t slot, bytes value)
