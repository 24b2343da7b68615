"""Time the wire codec: encode and decode cost per message, for frames of --messages messages.

Usage: python bench/bench_codec.py [--messages 100] [--value-size 100] [--repeat 7] [--min-time 0.2]

Each repeat runs as many whole frames as fit in --min-time seconds and reports ns per message; the printed
figure is the median over the repeats (min and max alongside).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from paxos_core.native import module_status  # noqa: E402
from paxos_core.wire import codec  # noqa: E402
from paxos_core.wire.message import Message  # noqa: E402

CLUSTER = 0x5EED
SENDER = 1
DEST = 2


def make_messages(count, value_size):
    value = bytes(range(256)) * (value_size // 256 + 1)
    return [Message(3, group=i % 1000, instance=1_000_000 + i, ballot=(7 << 16) | SENDER, mark=999_990 + i,
                    aux=0, chain=0xDEADBEEF, value=value[:value_size]) for i in range(count)]


def time_per_message(fn, messages_per_call, min_time):
    """ns per message of one run of `fn` repeated for at least `min_time` seconds."""
    loops = 1
    while True:
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed >= min_time * 1e9:
            return elapsed / (loops * messages_per_call)
        loops = max(loops * 2, int(loops * min_time * 1e9 / max(elapsed, 1) * 1.1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100, help="messages per frame (default 100)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per message value (default 100)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats; the median is reported (default 7)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat (default 0.2)")
    args = parser.parse_args(argv)

    name, compiled, path = module_status("paxos_core.wire.codec")
    if not compiled:
        print("warning: %s is not the compiled extension (%s)" % (name, path), file=sys.stderr)

    messages = make_messages(args.messages, args.value_size)
    frame = codec.encode_frame(CLUSTER, SENDER, DEST, messages)
    sender, decoded = codec.decode_frame(frame, CLUSTER, DEST)
    assert sender == SENDER and len(decoded) == len(messages)
    encoder = codec.FrameEncoder(CLUSTER, SENDER, DEST)

    def encode_list():
        codec.encode_frame(CLUSTER, SENDER, DEST, messages)

    def encode_incremental():
        add = encoder.add
        for m in messages:
            add(m)
        encoder.finish()

    def decode():
        codec.decode_frame(frame, CLUSTER, DEST)

    cases = [
        ("encode_frame(list)", encode_list),
        ("FrameEncoder.add+finish", encode_incremental),
        ("decode_frame", decode),
    ]
    n = args.messages
    print("frame: %d messages x %d B values = %d bytes; %d repeats of >= %.2f s"
          % (n, args.value_size, len(frame), args.repeat, args.min_time))
    medians = {}
    for label, fn in cases:
        samples = [time_per_message(fn, n, args.min_time) for _ in range(args.repeat)]
        medians[label] = statistics.median(samples)
        print("  %-26s median %7.1f ns/message   (min %.1f, max %.1f)"
              % (label, medians[label], min(samples), max(samples)))
    print("  %-26s median %7.1f ns/message" % ("encode_frame + decode", medians["encode_frame(list)"]
                                                 + medians["decode_frame"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
