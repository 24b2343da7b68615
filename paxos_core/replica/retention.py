"""Retention: keep each group's log bounded by truncating what its state machine has durably applied.

Runs in step 4a of the replica loop's turn, before the cycle: its truncations are effects of the engine
(range deletes and a LOW record) written in that cycle's ONE synced write. Per group the bound is

    B = min(applied mark read now, the applied mark of every snapshot file of the group being served)
    T = the largest multiple of 64 at or below B - retain_instances
    T = max(T, the smallest multiple of 64 C <= B whose values from C up weigh at most retain_bytes)
    truncate if T >= low + 64

so a node keeps `retain_instances` chosen values below what it applied, or fewer when they weigh more than
`retain_bytes` (a peer that lags by less catches up from the log; one that lags more gets a snapshot).

The peers' floor F (the lowest chosen mark of the live peers at most `peer_lag_instances` behind, which the
leader computes and sends to every node in its Accepts and Chosen notices; 0 = not known) spares such a peer
the snapshot: where 0 < F < B the cut is the rule above applied at F instead of B, but never below the rule
applied at B with `peer_lag_instances` more instances and `peer_lag_bytes` more bytes, so a peer that stops
catching up cannot make a log grow without bound. The
weight of the values from C up is the engine's learned bytes minus the bytes below C of the CHAIN record at C
(a binary search over those records, done only for a group whose log holds more than retain_bytes: the
engine keeps the bytes below its low mark). A node never deletes a record its own recovery needs: the
applied mark read here was written to the state machine's column family by an earlier turn, before this
cycle's write in the same write-ahead log, so any state recovered with the new LOW record also has the
state machine at or past it (docs/design/checkpoints.md, section 2, I2). The chain and value bytes at T come
from the durable CHAIN record at T. Low moves at most `step_instances` per truncation and at most
`groups_per_turn` groups are truncated per turn; candidates come from one numpy pass over the engine's
arrays, so idle groups cost nothing.

Plant "weigh-short" stops the cut by weight one block of 64 short, so logs keep more than retain_bytes (the
simulator checks every log after each retention run).

Plant "truncate-too-far" truncates at the engine's learned mark (with the engine's chain) instead of the
applied one: values learned in this turn are applied only after its write, so a crash before the next synced
write leaves the log truncated past the state machine's durable state (the simulator must catch it). The
correct rule cannot go there: its cut needs a durable CHAIN record, and everything learned before this turn
was applied in the turn that learned it.
"""
import numpy as np

from ..core.engine import GROUP_OK
from ..storage.records import BYTES_UNKNOWN

ALIGN = 64


class Retention:
    def __init__(self, engine, sm, log, group_of, retain_instances=-1, groups_per_turn=32,
                 step_instances=65536, pins=None, plant="", retain_bytes=0, peer_lag_instances=0,
                 peer_lag_bytes=0):
        """`group_of(slot)`: the group in an engine slot; `pins()`: group -> lowest instance to keep (the
        applied mark of a snapshot file being served); `retain_instances` < 0: never truncate;
        `retain_bytes` 0: no limit by weight; `peer_lag_instances` 0: the peers' floor is ignored."""
        self.engine = engine
        self.sm = sm
        self.log = log
        self.group_of = group_of
        self.retain = retain_instances
        self.retain_bytes = max(0, retain_bytes)
        self.peer_lag = max(0, peer_lag_instances)
        self.peer_lag_bytes = max(0, peer_lag_bytes)
        self.groups_per_turn = groups_per_turn
        self.step = max(ALIGN, step_instances // ALIGN * ALIGN)
        self.pins = pins or (lambda: {})
        self.too_far = plant == "truncate-too-far"
        self.weigh_short = plant == "weigh-short"
        if not hasattr(sm, "checkpoint_entries"):
            # No keyed checkpoints (replica/snapshots.py): a peer behind a truncation could never catch up.
            self.retain = -1
        self.truncations = 0
        self.next_slot = 0            # the slot the next run starts its candidates from
        self.instances = 0
        self.skipped = 0              # candidates whose CHAIN record at the cut was missing or damaged

    def run(self):
        """Truncate up to `groups_per_turn` groups whose log holds more than retain + 64 learned values."""
        if self.retain < 0:
            return 0
        engine = self.engine
        learner = engine.learner
        chosen = learner.chosen_next_array.astype(np.int64)
        low = learner.low_array.astype(np.int64)
        ahead = chosen - low
        wanted = ahead >= self.retain + ALIGN
        if self.retain_bytes:
            weight = learner.learned_bytes_array.astype(np.int64) - learner.low_bytes_array.astype(np.int64)
            wanted |= (weight > self.retain_bytes) & (ahead >= 2 * ALIGN)
        if self.peer_lag:
            # Groups a peers' floor holds are candidates only where a cut can move: by the floor, or by the cap.
            floor = learner.peer_floor_array.astype(np.int64)
            pinned = (floor > 0) & (floor < chosen)
            if pinned.any():
                held = (floor - low >= self.retain + ALIGN) | (ahead >= self.retain + self.peer_lag + ALIGN)
                if self.retain_bytes:
                    held |= (weight > self.retain_bytes) & (floor // ALIGN * ALIGN >= low + ALIGN)
                    held |= (weight > self.retain_bytes + self.peer_lag_bytes) & (ahead >= 2 * ALIGN)
                wanted = np.where(pinned, held, wanted)
        slots = np.flatnonzero(wanted)
        if not len(slots):
            return 0
        if self.next_slot:
            # Start where the last run stopped: groups a pin (or the applied mark) keeps from being cut stay
            # candidates, and must not crowd the others out of the per-run limit.
            k = int(np.searchsorted(slots, self.next_slot))
            slots = np.concatenate([slots[k:], slots[:k]])
        pins = self.pins()
        done = 0
        for slot in slots[:self.groups_per_turn * 4]:
            self.next_slot = int(slot) + 1
            group = self.group_of(int(slot))
            if not engine.hosts(group) or engine.group_status(group) != GROUP_OK:
                continue
            chosen, chain = engine.learned(group)
            if self.too_far:
                # Planted bug: cut at what the engine learned, with its chain, ahead of what is applied.
                if chosen > engine.low(group):
                    engine.truncate(group, chosen, chain, engine.learned_bytes(group))
                    self.truncations += 1
                    done += 1
                continue
            bound = min(self.sm.applied_next(group), chosen)
            pin = pins.get(group)
            if pin is not None:
                bound = min(bound, pin)
            low = engine.low(group)
            if bound // ALIGN * ALIGN < low + ALIGN:
                continue                  # nothing applied to cut at yet
            floor = int(learner.peer_floor_array[slot]) if self.peer_lag else 0
            if 0 < floor < bound:
                # A live peer still needs what lies above the floor: cut as if the floor were the applied
                # mark, but keep no more than peer_lag instances (and bytes) beyond the usual limits.
                cut = max(self._cut(group, slot, low, floor, self.retain, self.retain_bytes),
                          self._cut(group, slot, low, bound, self.retain + self.peer_lag,
                                    self.retain_bytes + self.peer_lag_bytes if self.retain_bytes else 0))
            else:
                cut = self._cut(group, slot, low, bound, self.retain, self.retain_bytes)
            cut = min(cut, low - low % ALIGN + self.step)
            if cut < low + ALIGN:
                continue
            found = self.log.read_chain_bytes(group, cut, with_config=True)
            if found is None:
                self.skipped += 1
                continue
            engine.truncate(group, cut, found[0], found[1], found[2])
            self.truncations += 1
            self.instances += cut - low
            done += 1
            if done >= self.groups_per_turn:
                break
        return done

    def _cut(self, group, slot, low, bound, keep, keep_bytes):
        """Where to cut to keep `keep` instances below `bound`, or fewer when the values from there up weigh
        more than `keep_bytes` (0: no limit by weight)."""
        cut = (bound - keep) // ALIGN * ALIGN if bound > keep else 0
        learned_bytes = self.engine.learned_bytes(group)
        if keep_bytes and learned_bytes - self.engine.learner.low_bytes_array[slot] > keep_bytes:
            cut = max(cut, self._cut_by_weight(group, low, bound, learned_bytes, keep_bytes))
        return cut

    def _cut_by_weight(self, group, low, bound, learned_bytes, keep_bytes):
        """The smallest multiple of 64 C in (low, B] (B = `bound` rounded down) whose values from C up weigh at
        most `keep_bytes`, by their CHAIN records (B if none does; 0 if a record is missing or predates byte
        counts)."""
        lo = low // ALIGN + 1
        hi = bound // ALIGN
        if hi < lo:
            return 0
        best = hi
        while lo <= hi:
            mid = (lo + hi) // 2
            found = self.log.read_chain_bytes(group, mid * ALIGN)
            if found is None or found[1] == BYTES_UNKNOWN:
                return 0
            if learned_bytes - found[1] <= keep_bytes:
                best = mid
                hi = mid - 1
            else:
                lo = mid + 1
        if self.weigh_short:
            best -= 1          # planted bug: the cut stops one block short, the log keeps more than retain_bytes
        return best * ALIGN
