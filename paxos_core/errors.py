"""Every exception paxos-core raises on purpose.

All derive from :class:`PaxosError`, so ``except PaxosError`` catches everything the library means to raise.
"""


class PaxosError(Exception):
    """Base class of every paxos-core error."""


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


class RecordCorrupt(PaxosError):
    """A storage record failed its checksum or does not decode. It is reported and never used."""


class ConfigError(PaxosError, ValueError):
    """A configuration value is invalid. The message names the field."""


class ValueTooLarge(PaxosError, ValueError):
    """A proposed value is larger than the configured maximum."""


# --- outcomes of a proposal ------------------------------------------------------------------------------


class ProposalError(PaxosError):
    """A proposal did not complete."""


class Timeout(ProposalError):
    """No answer in time. The OUTCOME IS UNKNOWN: the value may still be chosen later.

    Retry with the same request id to get exactly-once behaviour.
    """


class NotMaster(ProposalError):
    """This node is not the group's master. ``master`` names the node to ask instead (or None if unknown)."""

    def __init__(self, message, master=None):
        super().__init__(message)
        self.master = master


class Overloaded(ProposalError):
    """A queue is full; the proposal was not accepted. Back off and retry."""


class GroupStopped(ProposalError):
    """The group stopped itself (divergence or unrepairable corruption) and refuses to serve."""
