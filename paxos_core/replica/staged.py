"""A Store wrapper that collects every write of a cycle and hands them to the real store as ONE batch.

The state machine and the master table both write through it during a cycle; the runtime calls
:meth:`StagedStore.commit` once at the end of the cycle. So the state machine's data and applied index and
the master state always change together, and a crash never leaves one ahead of the other.
"""
from ..statemachine.store import Store


class StagedStore(Store):
    def __init__(self, inner):
        self.inner = inner
        self._puts = {}
        self._deletes = set()
        self._ranges = []
        self.commits = 0

    def _hidden(self, key):
        if key in self._deletes:
            return True
        return any(begin <= key < end for begin, end in self._ranges)

    def get(self, key):
        value = self._puts.get(key)
        if value is not None:
            return value
        if self._hidden(key):
            return None
        return self.inner.get(key)

    def scan(self, prefix):
        merged = {k: v for k, v in self.inner.scan(prefix) if not self._hidden(k)}
        for k, v in self._puts.items():
            if k.startswith(prefix):
                merged[k] = v
        return iter(sorted(merged.items()))

    def write(self, puts, deletes, delete_ranges=()):
        for begin, end in delete_ranges:
            for key in [k for k in self._puts if begin <= k < end]:
                del self._puts[key]
            self._ranges.append((begin, end))
        for key in deletes:
            self._puts.pop(key, None)
            self._deletes.add(key)
        for key, value in puts:
            self._puts[key] = value
            self._deletes.discard(key)

    def pending(self):
        return bool(self._puts or self._deletes or self._ranges)

    def commit(self):
        """Write everything staged as one batch (ranges, then deletes, then puts)."""
        if not self.pending():
            return
        self.inner.write(list(self._puts.items()), sorted(self._deletes), list(self._ranges))
        self._puts = {}
        self._deletes = set()
        self._ranges = []
        self.commits += 1

    def close(self):
        self.inner.close()
