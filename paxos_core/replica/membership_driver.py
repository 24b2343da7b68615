"""What a worker does about membership on its own (issue 14, step 4; docs/design/membership.md), sans-I/O.

Step 4 so far: the system group (core/config.py's SYSTEM_GROUP) is hosted by worker 0 of every node, and
its table starts empty. Worker 0 of every node proposes the seed (epoch 1: the node file's members, all
voters, and the cluster's alpha) until the applied table is seeded. Seeding is idempotent (a seeded table
takes a later seed as a no-op), so every node may propose it, at any time, as often as it likes: the first
one chosen makes epoch 1, and a node whose file lists other members than the table does not change it
(``status`` reports the mismatch).

The seed goes through the loop like a client's proposal, without a session (client id 0) and without a
client to answer (the identity ``INTERNAL``, whose replies the loop drops): it waits for the system group's
master, is redirected when another node is master (that node proposes its own), and is proposed again when
it times out. Nothing here reads a clock: ``on_tick`` gets the loop's tick counter.
"""
from __future__ import annotations

import json

from ..core.config import SYSTEM_GROUP
from ..statemachine.membership import encode_change
from ..statemachine.user import decode_user_result

INTERNAL = None              # the identity of requests the loop makes itself: their replies go nowhere


def seed_command(config, public_keys=None) -> bytes:
    """The seed of a node file's cluster: every member (its address, and its CURVE public key as text, "-"
    without keys), all voters, and cluster.alpha. `public_keys`: node id -> z85 bytes (None: no keys)."""
    nodes = []
    for n in config.nodes:
        key = public_keys.get(n.id) if public_keys else None
        nodes.append({"id": n.id, "host": n.host, "peer_port": n.peer_port, "client_port": n.client_port,
                      "public_key": key.decode("ascii") if key else "-"})
    return encode_change("seed", alpha=config.alpha, nodes=nodes)


class MembershipDriver:
    """One per worker. On the worker that hosts the system group: seeds its table (see the module docstring)."""

    def __init__(self, seed: bytes = b"", retry_ticks: int = 100):
        self.seed = seed
        self.retry_ticks = retry_ticks
        self.seeded = not seed            # nothing to seed: done
        self.next_try = 0                 # tick at which the seed is proposed (again)
        self.proposed = 0                 # how many times it was

    def on_tick(self, loop, now: int) -> None:
        """Called by the loop when its tick advanced."""
        if self.seeded or now < self.next_try or not loop.engine.hosts(SYSTEM_GROUP):
            return
        if loop.sm.membership_table()["epoch"] > 0:
            self.seeded = True
            return
        # Not seeded yet: propose the seed, and again after retry_ticks (a request that timed out, or was
        # redirected to a master that has not proposed one yet, is simply made again). The seed may be chosen
        # already without this node having heard (the group went idle after it): ask a peer for what we miss.
        self.next_try = now + self.retry_ticks
        self.proposed += 1
        loop.engine.poke(SYSTEM_GROUP)
        loop.propose_internal(SYSTEM_GROUP, self.seed, self.retry_ticks)

    def status(self, loop) -> dict:
        """The table as this worker applied it, in short (only the worker hosting the system group has one)."""
        if not loop.engine.hosts(SYSTEM_GROUP):
            return {}
        table = loop.sm.membership_table()
        return {"epoch": table["epoch"], "voters": table["voters"], "learners": table["learners"],
                "seed_proposed": self.proposed}


def table_of(read_result: bytes) -> dict:
    """The table from the reply to a read of the system group (query b"table")."""
    return json.loads(decode_user_result(read_result))
