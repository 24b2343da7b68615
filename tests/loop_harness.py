"""Driving one sans-I/O ReplicaLoop by hand in tests: turns on a test clock, replies decoded."""
from paxos_core.wire import rpc


def run_turns(loop, clock, frames=(), n=1, step=0.01, identities=False):
    """Run n turns of `loop` (the client `frames` in the first one), advancing `clock.t` by `step` before
    each; every reply decoded, batches split: [(status, req_id, body)], or [(identity, status, req_id, body)]
    with `identities`."""
    replies = []
    for k in range(n):
        loop.poll_timeout()
        clock.t += step
        loop.turn((), list(frames) if k == 0 else ())
        replies.extend(loop.take_replies())
    out = []
    for identity, frame in replies:
        status, req_id, body = rpc.decode_reply(frame)
        decoded = rpc.split_reply_batch(body) if status == rpc.BATCH else None
        for reply in ([rpc.decode_reply(inner) for inner in decoded] if decoded is not None
                      else [(status, req_id, body)]):
            out.append(((identity,) + tuple(reply)) if identities else tuple(reply))
    return out
