"""Every exception paxos-core raises on purpose.

All derive from :class:`PaxosError`, so ``except PaxosError`` catches everything the library means to raise.
(:class:`paxos_core.statemachine.ApplyOrderError`, a bug in a state machine's caller, lives beside the
state-machine interface.) README.md's error list names every class here; tests/test_api.py checks it.
"""
from __future__ import annotations

from typing import Any


class PaxosError(Exception):
    """Base class of every paxos-core error."""

    #: The request id ``(client id, seq)`` of the proposal this error answers, set by the client on every error
    #: of a proposal (a batch: its first seq). Pass it back as ``request_id=`` to retry the same request.
    request_id: tuple[int, int] | None = None


# --- bad input: the input is refused and nothing changes ------------------------------------------------


class FrameError(PaxosError, ValueError):
    """A wire frame was refused. Nothing in it was applied. Subclasses say why."""


class FrameTruncated(FrameError):
    """The frame ends before its header or one of its messages does."""


class FrameChecksumError(FrameError):
    """The frame's crc32c does not match its contents (corruption in transit or a forged frame)."""


class FrameTooLarge(FrameError):
    """The frame, or a value inside it, is bigger than the configured limit."""


class WrongCluster(FrameError):
    """The frame was sent by a node of another cluster (cluster id mismatch)."""


class UnknownVersion(FrameError):
    """The frame or record uses a format version this build does not understand."""


class MalformedFrame(FrameError):
    """The frame is internally inconsistent (bad magic, unknown message kind, lengths that do not add up)."""


class BadRequest(PaxosError, ValueError):
    """A client request that does not decode (the worker refused it; nothing was proposed)."""


class RecordCorrupt(PaxosError):
    """A storage record failed its checksum or does not decode. It is reported and never used."""


class ConfigError(PaxosError, ValueError):
    """A configuration value is invalid. The message names the field."""


class StartError(PaxosError):
    """A node did not start: one of its workers could not come up (an address in use, a data directory held by
    another process, ...). The message is one line saying why; nothing the failed start began is left running.
    """


class ValueTooLarge(PaxosError, ValueError):
    """A proposed value is larger than the configured maximum."""


# --- outcomes of a proposal ------------------------------------------------------------------------------


class ProposalError(PaxosError):
    """A proposal did not complete."""


class Timeout(ProposalError):
    """No answer in time. The OUTCOME IS UNKNOWN: the value may still be chosen later.

    Retry with the same request id to get exactly-once behaviour. A request whose earlier attempt may have been
    proposed (it timed out at one node, or the caller passed its ``request_id`` to retry it) ends in Timeout too
    when a later attempt is refused (Overloaded, GroupStopped, StaleRequest, ...): that refusal is its
    ``__cause__``, and a batch's ``results`` come along.
    """

    results: list[Any] | None = None


class NotMaster(ProposalError):
    """This node is not the group's master. ``master`` names the node to ask instead (or None if unknown)."""

    def __init__(self, message: str, master: int | None = None) -> None:
        super().__init__(message)
        self.master = master


class Overloaded(ProposalError):
    """A queue is full; the proposal was not accepted. Back off and retry."""


class GroupStopped(ProposalError):
    """The group stopped itself (divergence or unrepairable corruption) and refuses to serve."""


class UnknownGroupError(ProposalError, KeyError):
    """The group is not known to the node(s) asked: never added, or removed. Nothing was proposed.

    The client asks every node before it raises this (a node that is behind may not have the group yet)."""


class SessionExpired(Timeout):
    """The state machine does not know the request's session (any more): NOTHING was applied by this attempt.

    The session expired (a group keeps a bounded number of sessions, least recently used go first), or it
    never started: the request was a retry whose earlier attempt had not landed when this one was decided.
    Either way an EARLIER ATTEMPT of the request may or may not have been applied (or may still be, if it is in
    flight): as with a Timeout, the OUTCOME IS UNKNOWN. It is a Timeout for that reason, so code that handles
    "outcome unknown" handles it too. Retrying with the same ``request_id`` cannot apply the request any more;
    it returns the remembered result only if an earlier attempt has landed meanwhile. ``request_id`` names it.
    A batch's error has ``results``: every operation's ProposeResult.
    """

    results: list[Any] | None = None


class StaleRequest(ProposalError):
    """The session has already applied a newer request than this one: NOTHING was applied for this request.

    Raised only when no earlier attempt of the request may have been proposed (a request id reused with
    ``retry=False`` after a newer request of the same session): a retry that finds its session past it ends in
    Timeout instead (caused by this), since the state machine keeps only each session's latest result and what
    the earlier attempt did is not known from this answer. ``request_id`` names the request. A batch's error
    has ``results``: every operation's ProposeResult, so the caller sees which ones applied.
    """

    results: list[Any] | None = None


class CommandError(PaxosError):
    """Your state machine's ``apply`` or ``query`` raised: the message is ``"<ExceptionType>: <message>"``.

    For a command this is its outcome, the same on every node: it was chosen, it changed nothing, and its
    session remembers the error (a retry with the same ``request_id`` gets it again)."""

    request_id: tuple[int, int] | None = None


# --- membership (paxos_core/membership.py): a change that was refused changed nothing --------------------


class MembershipError(PaxosError):
    """A membership change was refused: the table is as it was. Subclasses say why; ``epoch`` is the table's
    epoch the refusal was decided at (0 if unknown)."""

    epoch: int = 0


class EpochConflict(MembershipError):
    """The change expected another epoch than the table's: another change came first. Read the table again
    and decide again (``expect=`` is compare-and-set)."""


class LearnerNotReady(MembershipError):
    """The learner to promote is not caught up (or cannot be asked): as a voter it could not vote yet, and the
    groups would depend on the other voters alone. Wait, or pass ``force=True``."""


class WouldLoseQuorum(MembershipError):
    """After the change, the live voters that are caught up would not be a majority: the groups would stop
    until a voter came back. Bring a node back first, or pass ``force=True``."""
