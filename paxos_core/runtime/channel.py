"""The private channel between the supervisor and each worker it spawns: one Unix socket pair per worker.

The worker gets its end as its stdin (no argument or environment variable names it) and keeps it open for
its whole life. Over it, in one direction only, the worker sends length-prefixed JSON messages:

* ``{"kind": "log", "record": {...}}``: every log record of the worker, which the supervisor hands to
  ``logging.getLogger(record.name).handle(record)`` in its own process, so the embedding program's logging
  configuration decides where they go (the worker writes nothing to its own stderr);
* ``{"kind": "ready", "pid": P}``: the worker has bound its sockets and recovered its log: it serves;
* ``{"kind": "failed", "reason": "one line"}``: the worker could not start, and why (it then exits with
  ``EXIT_START_FAILED``).

* ``{"kind": "membership", "table": {...}}``: worker 0 (which hosts the system group) applied a newer
  membership table (replica/membership_driver.py).

The other direction carries the newest membership table the supervisor was told of, in the same framing
(``{"kind": "membership", "table": {...}}``, to every worker when it changes and to a worker that (re)starts),
and end of file: the supervisor's end closes when the supervisor process dies (however it dies), and the
worker, which polls its end with its other sockets, stops at once.
On Linux the worker also asks for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), which also covers a
worker still busy starting; that signal follows the parent *thread* that spawned it, so the supervisor
spawns from its own long-lived thread.
"""
import json
import logging
import os
import queue
import signal
import socket
import stat
import struct
import sys
import threading

EXIT_START_FAILED = 3          # a worker that reported why it could not start exits with this code

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 20          # a log record longer than this is cut (its message is truncated)
_QUEUE_LIMIT = 10000           # messages waiting for the sender thread; beyond it log records are dropped


def encode(message):
    data = json.dumps(message, default=repr, separators=(",", ":")).encode("utf-8", "replace")
    if len(data) > MAX_MESSAGE and message.get("kind") == "log":
        record = dict(message["record"])
        record["msg"] = str(record.get("msg", ""))[:MAX_MESSAGE // 2] + " [cut]"
        data = json.dumps({"kind": "log", "record": record}, default=repr, separators=(",", ":")).encode(
            "utf-8", "replace")[:MAX_MESSAGE]
    return _HEADER.pack(len(data)) + data


class MessageReader:
    """Splits the bytes read from a channel into messages (the supervisor's side)."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data):
        self.buffer += data
        out = []
        while len(self.buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + length:
                break
            body = bytes(self.buffer[_HEADER.size:_HEADER.size + length])
            del self.buffer[:_HEADER.size + length]
            try:
                out.append(json.loads(body))
            except ValueError:
                continue
        return out


def pair():
    """(supervisor's end, worker's end): a connected Unix stream socket pair, neither inherited by default."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def set_parent_death_signal(signum=signal.SIGTERM):
    """Ask the kernel to send `signum` to this process when its parent (thread) dies. Linux only; False
    elsewhere or if the call fails (the channel's end of file still stops the worker)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ParentChannel:
    """The worker's end. Messages go out through a queue and a sender thread, so the worker's loop never
    blocks on a supervisor that is slow to read; if the queue is full, log records are dropped and counted."""

    def __init__(self, sock):
        self.sock = sock
        self.queue = queue.Queue(_QUEUE_LIMIT)
        self.dropped = 0
        self.reported_dropped = 0
        self.broken = False
        self.reader = MessageReader()
        self.inbox = []                  # messages from the supervisor, read by parent_gone()
        self.thread = threading.Thread(target=self._pump, name="paxos-parent-channel", daemon=True)
        self.thread.start()

    @classmethod
    def from_stdin(cls):
        """The channel the supervisor passed as stdin, or None if stdin is not a socket (run by hand).
        Stdin itself is then pointed at /dev/null, so that nothing else reads the channel."""
        try:
            if not stat.S_ISSOCK(os.fstat(0).st_mode):
                return None
        except OSError:
            return None
        sock = socket.socket(fileno=os.dup(0))
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        return cls(sock)

    def fileno(self):
        return self.sock.fileno()

    def parent_gone(self):
        """Call when the channel is readable: True once the supervisor's end is closed (end of file). The
        messages read on the way wait in `inbox`."""
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
            if not data:
                return True
            self.inbox.extend(self.reader.feed(data))

    def send(self, message, block=False):
        try:
            self.queue.put(message, block=block, timeout=5.0 if block else None)
        except queue.Full:
            self.dropped += 1

    def _pump(self):
        while True:
            message = self.queue.get()
            if message is None:
                return
            if self.broken:
                continue
            try:
                self.sock.sendall(encode(message))
                if self.dropped > self.reported_dropped:
                    count, self.reported_dropped = self.dropped - self.reported_dropped, self.dropped
                    record = logging.makeLogRecord({
                        "name": "paxos_core.worker", "levelno": logging.WARNING, "levelname": "WARNING",
                        "msg": "%d log records of this worker were dropped: the supervisor did not read them in "
                               "time" % count})
                    self.sock.sendall(encode({"kind": "log", "record": record.__dict__}))
            except OSError:
                self.broken = True            # the supervisor is gone: nobody to tell

    def close(self, timeout=5.0):
        """Send what is queued (up to `timeout` seconds), then close."""
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self.thread.join(timeout)
        self.sock.close()


class ParentLogHandler(logging.Handler):
    """Sends every record to the supervisor, formatted into its message (exception text included), as
    logging.handlers.QueueHandler prepares records for another thread."""

    def __init__(self, channel):
        super().__init__()
        self.channel = channel

    def emit(self, record):
        try:
            text = self.format(record)
            data = dict(record.__dict__)
            data.update(msg=text, args=None, exc_info=None, exc_text=None, stack_info=None)
            data.pop("message", None)
            self.channel.send({"kind": "log", "record": data})
        except Exception:
            self.handleError(record)


def forward_record(data, node_id, index):
    """Supervisor's side: re-emit a worker's record through this process's logging, where the embedding
    program's configuration applies. The record keeps the worker's pid (``process``) and time, and gets
    ``node``, ``worker`` and ``processName`` ("node1.worker0")."""
    record = logging.makeLogRecord(data)
    record.node = node_id
    record.worker = index
    record.processName = "node%d.worker%d" % (node_id, index)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
