"""Progress of a long command: a bar on a terminal, plain lines anywhere else.

On a terminal, a tqdm bar on stderr (redrawn in place with carriage returns and escape codes). When stderr is
not a terminal (a pipe, a file, CI's log) tqdm switches itself off (``disable=None``) and progress is written as
ordinary lines now and then instead, so a log never holds an escape code or a carriage return.
"""
import sys
import time

from tqdm import tqdm


class Progress:
    """Progress over `total` units of work.

    `every`: when not on a terminal, a line every that many units (and one at the end); None: a line only
    when the stage changes (`stage`). `stage(text)` says what the current unit is doing."""

    def __init__(self, total, unit, desc="", every=None, file=None):
        self.file = file if file is not None else sys.stderr
        self.total = total
        self.unit = unit
        self.every = every
        self.done = 0
        self.started = time.monotonic()
        self.bar = tqdm(total=total, unit=unit, desc=desc or None, file=self.file, disable=None, leave=True,
                        dynamic_ncols=True)
        self.plain = self.bar.disable

    def _line(self, text):
        self.file.write("%s (%.0fs)\n" % (text, time.monotonic() - self.started))
        self.file.flush()

    def update(self, n=1):
        self.done += n
        if not self.plain:
            self.bar.update(n)
        elif self.every and (self.done % self.every == 0 or self.done == self.total):
            self._line("%d/%d %s" % (self.done, self.total, self.unit))

    def stage(self, text):
        if not self.plain:
            self.bar.set_postfix_str(text)
        else:
            self._line("%d/%d %s: %s" % (min(self.done + 1, self.total), self.total, self.unit, text))

    def write(self, text, file=None):
        """A line of output that must not be torn by the bar (it goes above it)."""
        out = file if file is not None else sys.stdout
        if self.plain:
            print(text, file=out)
        else:
            self.bar.write(text, file=out)

    def close(self):
        if not self.plain:
            self.bar.close()
        elif not self.every:
            self._line("%d/%d %s done" % (self.done, self.total, self.unit))
