from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from paxos_core.core.acceptor cimport AcceptorState
from paxos_core.core.learner cimport LearnerState
from paxos_core.core.proposer cimport ProposerGroup, ProposerState
from paxos_core.core.voters cimport Config, VoterTable
from paxos_core.wire.message cimport Message

cpdef enum GroupStatus:
    GROUP_OK = 0
    GROUP_REPAIRING = 1   # recovered with damaged records: learns from peers, takes no acceptor part
    GROUP_STOPPED = 2     # diverged or unrepairable: refuses to serve
    GROUP_ABSENT = 3      # slot not hosted (removed, or never added)

cdef enum:  # counter indexes (names in engine.COUNTER_NAMES)
    C_MSG_IN = 0
    C_MSG_OUT = 1
    C_RECORDS = 2
    C_PROPOSALS = 3
    C_INSTANCES_PROPOSED = 4
    C_CHOSEN = 5
    C_ACKS = 6
    C_EXPIRED = 7
    C_PREPARES = 8
    C_ELECTIONS_WON = 9
    C_STEP_DOWNS = 10
    C_REJECTS_SENT = 11
    C_RETRANSMITS = 12
    C_CATCHUP_REQUESTS = 13
    C_CATCHUP_LEARNED = 14
    C_FORWARDS = 15
    C_DIVERGENCES = 16
    C_DROPPED_UNKNOWN_GROUP = 17
    C_PROMISES_SENT = 18
    C_ACCEPTS_SENT = 19
    C_ACCEPTED_SENT = 20
    C_CHOSEN_SENT = 21
    C_BATCHED_PROPOSALS = 22
    C_CATCHUP_REJECTED = 23
    C_STICKY_REJECTS = 24
    C_RESIGNS = 25
    C_REPAIRS_STARTED = 26
    C_REPAIRS_DONE = 27
    C_STALE_VOTES = 28
    C_WRONG_INCARNATION = 29
    C_TRUNCATIONS = 30
    C_TRUNCATED_INSTANCES = 31
    C_INSTALLS = 32
    C_OFFERS = 33
    C_STRANGERS = 34      # Prepares and Accepts refused because their sender votes in no configuration we know
    C_ADOPTS = 35         # configurations adopted (an ADOPT learned)
    C_ACTIVATIONS = 36    # configurations that took effect (the chosen mark reached their activation)
    C_MALFORMED = 37      # messages refused whole: their value does not decode (Engine.receive)
    C_FORGED_BALLOTS = 38 # Prepares and Accepts refused: their ballot names another node than their sender
    C_INC_NOTICES = 39    # INC_NOTICEs sent (Engine._on_other_incarnation)
    C_COUNT = 40

cdef class Effects:
    cdef public list records        # record tuples to persist, in order (see paxos_core.storage.records)
    cdef public list send_now       # [(dest, Message)] may leave before the records are durable
    cdef public list send_after     # [(dest, Message)] must wait until every record so far is durable
    cdef public list chosen         # [(group, instance, value)] in instance order per group
    cdef public list acks           # [(tag, group, instance)] proposals made here that are chosen
    cdef public list expired        # [(tag, group, reason)] proposals given up (outcome unknown)
    cdef public list serve          # [(dest, group, first, end, chain)] send the chosen values [first, end)
                                    # from DURABLE storage, with our chain at `end` (-1: read it from the
                                    # CHAIN record at `end`), as one CATCHUP_REPLY
    cdef dict serve_at              # (dest, group) -> index in serve: one reply per peer and group per batch
    cdef public list offers         # [(dest, group, first)] the peer asked for values below our low (they
                                    # were truncated): offer it a snapshot (replica/snapshots.py)
    cdef set offer_at               # (dest, group) pairs offered to in this batch: one offer each
    cdef public list deletes        # [(record type, group, first, end)] range deletes, in the records' batch
                                    # and after them (truncation, an install)
    cdef public list foreign        # [Message] kinds the engine does not handle (snapshot transfer), for the
                                    # replica layer; already checked for group and incarnation
    cdef public list stopped        # [(group, reason)] groups that stopped themselves
    cdef public list self_votes     # [(group, instance, ballot)] our own acceptor's votes as our proposer counts them (for observers)
    cdef public list superseded     # [(group, incarnation, first)] a peer holds a newer incarnation of a group whose
                                    # copy here may be replaced by it (Engine._on_other_incarnation)
    cdef public long token          # pass to Engine.persisted() once the records are durable

cdef class Engine:
    cdef readonly object config
    cdef readonly int node_id
    cdef readonly tuple members
    cdef readonly tuple peers
    cdef dict member_index          # every node of the cluster (voter or learner of some group) -> index
    cdef readonly VoterTable voters # per group and instance: who votes (core/voters.pyx; rules R3-R6)
    cdef uint64_t alpha
    cdef public object lead_config_array    # numpy uint16: the configuration (voters' index) our last phase 1
    cdef uint16_t[::1] lead_config          # counted promises under; we lead only where it governs (R4)
    cdef dict adopt_due             # slot -> ADOPT value this node proposes when it leads (Engine.adopt)
    cdef object rng
    cdef readonly AcceptorState acceptor
    cdef readonly LearnerState learner
    cdef readonly ProposerState proposer
    cdef public object status_array
    cdef uint8_t[::1] status
    cdef public object inc_array            # numpy uint16: each hosted group's incarnation
    cdef uint16_t[::1] inc
    cdef readonly dict stop_reasons
    cdef public object counters_array
    cdef int64_t[::1] counters
    cdef readonly int64_t now
    cdef readonly Py_ssize_t n_slots
    cdef uint32_t group_offset
    cdef uint32_t group_stride
    cdef Py_ssize_t slot_base       # 1 when slot 0 holds the system group, else 0
    cdef dict active
    cdef list self_queue
    cdef list self_after
    cdef bint fill_at_take
    cdef dict fill_due               # slots with proposals queued since the last take_effects (fill_at_take),
                                     # in the order of their first proposal
    cdef Effects fx
    cdef long token
    cdef uint64_t seq
    # configuration copied into C fields for the hot paths
    cdef uint64_t window
    cdef Py_ssize_t max_batch_count
    cdef Py_ssize_t max_batch_bytes
    cdef Py_ssize_t max_value_bytes
    cdef int64_t retransmit_ticks
    cdef int max_retransmits
    cdef bint retransmit_backoff
    cdef int64_t backoff_lo
    cdef int64_t backoff_hi
    cdef int64_t leader_timeout
    cdef int64_t forward_timeout
    cdef int64_t catchup_interval
    cdef int64_t idle_chosen
    cdef uint64_t catchup_max
    cdef int64_t proposal_timeout
    cdef int64_t sticky
    cdef int64_t vote_ttl
    cdef int64_t repair_wait
    cdef uint64_t peer_lag           # peers' floor: a live peer at most this far behind pins the log (0: off)
    cdef int64_t peer_live           # ... if heard within this many ticks
    cdef readonly dict repairs      # slot -> Repair, only while a group rebuilds
    cdef readonly dict catchup_asked    # slot -> the peer our last catch-up request went to, while it is
                                        # unanswered (progress clears it)
    cdef readonly dict peer_heard       # node -> the tick we last received a message from it
    cdef readonly dict handoffs     # slot -> [mark, voters, heard set, asked_at], while this node hands the group
                                    # over (Engine.handoff)
    cdef dict notice_at             # (slot, node) -> tick of our last INC_NOTICE to it (only for mismatches)
    cdef bint plant_requeue_reverse
    cdef bint plant_config_forgets_history
    cdef bint plant_catchup_any_peer
    cdef bint plant_catchup_source_only
    cdef bint plant_amnesia_votes
    cdef bint plant_readd_amnesia
    cdef bint plant_reply_before_sync
    cdef bint plant_promise_not_persisted
    cdef bint plant_learn_without_quorum
    cdef bint plant_forward_twice
    cdef bint plant_relay_appends
    cdef bint plant_prepare_unpromised
    cdef bint plant_fill_reverse
    cdef bint plant_reprepare_uncapped
    cdef bint window_override        # the plant above: _fill ignores the window for re-proposals
    cdef bint plant_config_at_i
    cdef bint plant_count_any_vote
    cdef bint plant_no_reprepare_at_activation
    cdef bint plant_snapshot_drops_config
    cdef bint plant_handoff_early
    cdef bint plant_reenter_without_learning

    cdef Py_ssize_t slot_of(self, uint32_t group) except -2
    cdef inline Py_ssize_t slot_for(self, uint32_t group)
    cdef inline uint32_t group_of(self, Py_ssize_t slot)
    cdef void _send(self, int dest, Message m, bint after)
    cdef void _broadcast(self, Message m, bint after)
    cdef void _record(self, tuple record)
    cdef void _reply(self, int dest, Message m)
    cdef void _dispatch(self, Message m)
    cdef void _on_other_incarnation(self, Py_ssize_t slot, Message m)
    cdef bint _replaceable(self, Py_ssize_t slot)
    cdef void _notice(self, Py_ssize_t slot, int dest, bytes first)
    cdef void _drain(self)
    cdef void _on_prepare(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_promise(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_accept(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_accepted(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_reject(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_chosen(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_catchup_req(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_catchup_reply(self, Py_ssize_t slot, Message m, int src)
    cdef set _own_in_flight(self, ProposerGroup pg)
    cdef void _on_sticky_refusal(self, Py_ssize_t slot, int src)
    cdef void _back_off_sticky(self, Py_ssize_t slot)
    cdef void _on_forward(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_state_req(self, Py_ssize_t slot, Message m, int src)
    cdef void _on_state_reply(self, Py_ssize_t slot, Message m, int src)
    cdef void _repair_tick(self, Py_ssize_t slot)
    cdef void _repair_progress(self, Py_ssize_t slot)
    cdef void _promise_raised(self, Py_ssize_t slot)
    cdef void _see_ballot(self, Py_ssize_t slot, uint64_t ballot)
    cdef void _start_prepare(self, Py_ssize_t slot)
    cdef void _finish_prepare(self, Py_ssize_t slot)
    cdef void _step_down(self, Py_ssize_t slot, bint vouch, list first_back)
    cdef list _own_unanswered(self, Py_ssize_t slot, bytes value)
    cdef void _requeue_front(self, ProposerGroup pg, list back)
    cdef void _take_back(self, Py_ssize_t slot, ProposerGroup pg, list back)
    cdef void _send_accept(self, Py_ssize_t slot, uint64_t instance, bytes value)
    cdef uint64_t _leader_floor(self, Py_ssize_t slot, ProposerGroup pg, bint unheard=*)
    cdef void _heard_mark(self, Py_ssize_t slot, int src, uint64_t mark)
    cdef void _fill(self, Py_ssize_t slot)
    cdef bint _voter_at(self, Py_ssize_t slot, uint64_t instance)
    cdef void _fill_adopt(self, Py_ssize_t slot, ProposerGroup pg, uint64_t cap)
    cdef void _learned_config(self, Py_ssize_t slot, uint64_t instance, bytes value)
    cdef void _route_follower(self, Py_ssize_t slot)
    cdef void _decide(self, Py_ssize_t slot, uint64_t instance, bytes value)
    cdef void _learn(self, Py_ssize_t slot, bytes value)
    cdef void _learn_one(self, Py_ssize_t slot, bytes value)
    cdef void _learn_by_mark(self, Py_ssize_t slot, uint64_t ballot, uint64_t mark, int src)
    cdef void _learn_from(self, Py_ssize_t slot, int src, uint64_t mark)
    cdef void _request_catchup(self, Py_ssize_t slot)
    cdef int _catchup_peer(self, int asked)
    cdef void _serve(self, int dest, Py_ssize_t slot, uint64_t first, uint64_t limit=*)
    cdef void _offer(self, int dest, Py_ssize_t slot, uint64_t first)
    cdef void _check_chain(self, Py_ssize_t slot, uint64_t mark, uint32_t chain, int src)
    cdef void _stop(self, Py_ssize_t slot, str reason)
    cdef bint _tick_group(self, Py_ssize_t slot)
