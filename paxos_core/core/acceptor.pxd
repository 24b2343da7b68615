from libc.stdint cimport uint64_t

cpdef enum AcceptorVerdict:
    REJECTED = 0         # ballot below the promise: nothing changed
    PROMISED = 1         # promise raised: the promise record must be persisted before the reply leaves
    PROMISED_AGAIN = 2   # same ballot as already promised: nothing new to persist
    ACCEPTED = 3         # accepted: the instance record must be persisted before the reply leaves

cdef class AcceptorState:
    cdef public object promised_array       # numpy uint64, one per slot
    cdef uint64_t[::1] promised             # the promise covers every instance not yet chosen
    cdef public object top_array            # numpy uint64: 1 + highest instance ever accepted, per slot
    cdef uint64_t[::1] top
    cdef public dict accepted               # slot -> {instance: (ballot, value)}; only instances not yet learned
    cdef bint ignore_promise                # planted bug

    cdef int on_prepare(self, Py_ssize_t slot, uint64_t ballot)
    cdef int on_accept(self, Py_ssize_t slot, uint64_t instance, uint64_t ballot, bytes value)
    cdef tuple get(self, Py_ssize_t slot, uint64_t instance)
    cdef void forget(self, Py_ssize_t slot, uint64_t instance)
    cdef list entries_from(self, Py_ssize_t slot, uint64_t first)
