from libc.stdint cimport uint16_t, uint64_t


cdef class Config:
    cdef readonly uint64_t epoch
    cdef readonly tuple voters          # node ids, ascending: a vote is counted by its position here
    cdef readonly int quorum            # a majority of the voters
    cdef dict _position                 # node id -> position in voters

    cpdef int position(self, int node)


cdef class VoterTable:
    cdef readonly uint64_t alpha        # a configuration adopted at instance i governs from i + alpha on
    cdef public object config_array     # numpy uint16 per slot: index of the group's current configuration
    cdef uint16_t[::1] current
    cdef public object first_array      # numpy uint16 per slot: index of the group's first configuration (0:
                                        # the table's; a group added at run time may start in another one)
    cdef uint16_t[::1] first
    cdef public dict pending            # slot -> [(activation instance, configuration index), ...] ascending
    cdef list configs                   # index -> Config (interned: one object per epoch and voter set)
    cdef dict index_of                  # (epoch, voters) -> index
    cdef public dict history            # slot -> [(activation, index of the configuration before it), ...]
                                        # ascending, for the activations above the group's truncation mark

    cdef Config config_at(self, Py_ssize_t slot, uint64_t instance)
    cdef uint16_t index_at(self, Py_ssize_t slot, uint64_t instance)
    cdef inline Config by_index(self, uint16_t index):
        return <Config>self.configs[index]
    cdef uint64_t span_end(self, Py_ssize_t slot, uint64_t start, tuple voters)
    cdef bint votes_anywhere(self, Py_ssize_t slot, int node)
    cdef Py_ssize_t learned_at(self, Py_ssize_t slot, uint64_t instance, bytes value, uint64_t delay) except -1
    cdef uint16_t _intern(self, uint64_t epoch, tuple voters) except? 65535
