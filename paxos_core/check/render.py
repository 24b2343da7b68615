"""Timelines of a history: plain text (one line per op) and self-contained HTML (no external JS or CSS).

Both draw every operation as a bar from its invoke to its complete on one time axis shared by the ops of a key;
an operation whose outcome is unknown runs off the right edge (it may take effect at any later time).
"""
import html

from .history import (
    INF,
    NOT_OBSERVED,
    OK,
    READ,
    WRITE,
    by_key,
    completion,
    describe,
    observed,
    show_time,
    show_value,
)


def _axis(ops):
    """(start, end) of the time axis: from the first invoke to the last finite time."""
    start = min(op.invoke for op in ops)
    finite = [completion(op) for op in ops if completion(op) != INF] + [op.invoke for op in ops]
    end = max(finite)
    if end <= start:
        end = start + 1.0
    return start, end


def short_label(op):
    """What an op did, in a few characters: ``w a``, ``r -> a``, ``cas a->b ok``, with ``?`` if unknown."""
    if op.kind == READ:
        text = "r -> %s" % show_value(op.result, 12) if op.outcome == OK else "r"
    elif op.kind == WRITE:
        text = "w %s" % show_value(op.value, 12) if op.value is not None else "del"
    else:
        text = "cas %s->%s" % (show_value(op.expected, 8), show_value(op.value, 8))
        if op.outcome == OK:
            text += " ok" if op.result else " no"
            if not op.result and observed(op) is not NOT_OBSERVED:
                text += " saw %s" % show_value(observed(op), 8)
    if op.outcome != OK:
        text += " ?" if op.outcome != "fail" else " (refused)"
    return text


def render_text(ops, *, width=60, order=None, title=None):
    """One line per op, sorted by invoke: its id, a bar between invoke and complete on an axis ``width``
    columns wide shared by all of ``ops``, and what it did. ``order`` (a sequence of ops) numbers the ops of
    a (partial) linearisation: ``#1`` is linearised first."""
    ops = sorted(ops, key=lambda op: op.invoke)
    if not ops:
        return "(no operations)"
    start, end = _axis(ops)
    scale = (width - 1) / (end - start)
    position = {id(op): i + 1 for i, op in enumerate(order or ())}
    id_width = max(len(str(op.id)) for op in ops)
    lines = []
    if title:
        lines.append(title)
    lines.append("%s  time %s .. %s, one column = %.3g" % (" " * id_width, show_time(start), show_time(end),
                                                           (end - start) / max(width - 1, 1)))
    for op in ops:
        first = int(round((op.invoke - start) * scale))
        finish = completion(op)
        row = [" "] * width
        if finish == INF:
            for col in range(first, width):
                row[col] = "="
            row[first] = "["
            row[width - 1] = ">"
        else:
            last = int(round((finish - start) * scale))
            if last == first:
                row[first] = "|"
            else:
                for col in range(first + 1, last):
                    row[col] = "="
                row[first] = "["
                row[last] = "]"
        number = position.get(id(op))
        suffix = "  #%d" % number if number else ""
        lines.append("%s |%s| %s%s" % (str(op.id).rjust(id_width), "".join(row), describe(op, with_id=False),
                                          suffix))
    return "\n".join(lines)


def _lanes(ops):
    """Rows for the HTML timeline: one per client when ops name their client, otherwise the fewest rows in
    which no two ops of a row overlap (greedy by invoke)."""
    if all(getattr(op, "client", None) is not None for op in ops):
        rows = {}
        for op in ops:
            rows.setdefault(op.client, []).append(op)
        return [("client %s" % client, row) for client, row in rows.items()]
    rows = []
    ends = []
    for op in sorted(ops, key=lambda op: op.invoke):
        for index, row_end in enumerate(ends):
            if row_end < op.invoke:
                rows[index].append(op)
                ends[index] = completion(op)
                break
        else:
            rows.append([op])
            ends.append(completion(op))
    return [("", row) for row in rows]


_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; } h2 { font-size: 15px; margin: 20px 0 6px; }
.verdict-ok { color: #1a7f37; } .verdict-violation { color: #c62828; } .verdict-unknown { color: #b26a00; }
.axis, .lane { position: relative; height: 24px; margin-left: 90px; border-left: 1px solid #bbb; }
.axis { height: 18px; border-bottom: 1px solid #bbb; }
.tick { position: absolute; top: 0; font-size: 11px; color: #666; transform: translateX(-50%); }
.lane-name { position: absolute; left: -90px; width: 84px; text-align: right; font-size: 11px; color: #666;
             top: 5px; overflow: hidden; white-space: nowrap; }
.op { position: absolute; top: 3px; height: 17px; border-radius: 3px; font-size: 11px; line-height: 17px;
      padding: 0 3px; overflow: hidden; white-space: nowrap; box-sizing: border-box; min-width: 4px;
      border: 1px solid rgba(0,0,0,.35); }
.op:hover { overflow: visible; z-index: 2; box-shadow: 0 0 0 2px #333; }
.kind-read { background: #cfe3ff; } .kind-write { background: #d7f5d3; } .kind-cas { background: #f4e1ff; }
.unknown { border-style: dashed; border-right: none;
           background-image: linear-gradient(to right, rgba(255,255,255,0) 60%, #fff); }
.flagged { border: 2px solid #c62828; background-color: #ffd9d9; }
.order { display: inline-block; background: #333; color: #fff; border-radius: 7px; padding: 0 4px;
         margin-right: 3px; font-size: 10px; line-height: 13px; }
ul.notes { margin: 6px 0 0 90px; padding-left: 16px; }
"""


def render_html(history, *, highlight=(), notes=None, verdicts=None, orders=None,
                title="paxos-core history"):
    """A self-contained HTML page drawing ``history`` (ops of any keys) as one timeline per key.

    ``highlight``: op ids drawn in red (the operations of an anomaly). ``notes``: key -> lines of text shown
    under that key's timeline. ``verdicts``: key -> "ok" | "violation" | "unknown" shown in the heading.
    ``orders``: key -> sequence of ops, a (partial) linearisation numbered on the bars. Every op's full
    description is its tooltip.
    """
    flagged = set(highlight)
    notes = notes or {}
    verdicts = verdicts or {}
    orders = orders or {}
    esc = html.escape
    parts = ["<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>%s</title><style>%s</style></head><body>"
             % (esc(title), _STYLE), "<h1>%s</h1>" % esc(title)]
    groups = by_key(history)
    for key in list(groups) + [k for k in notes if k not in groups]:
        ops = groups.get(key, [])
        verdict = verdicts.get(key)
        heading = "key %s" % esc(show_value(key, 64))
        if verdict:
            heading += " &mdash; <span class='verdict-%s'>%s</span>" % (esc(verdict), esc(verdict))
        parts.append("<h2>%s</h2>" % heading)
        if ops:
            parts.append(_timeline(ops, flagged, orders.get(key, ())))
        if notes.get(key):
            parts.append("<ul class='notes'>%s</ul>" % "".join("<li>%s</li>" % esc(line) for line in notes[key]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _timeline(ops, flagged, order):
    esc = html.escape
    start, end = _axis(ops)
    # leave room on the right for bars of unknown outcome and labels of ops at the very end
    span = (end - start) * 1.08
    position = {id(op): i + 1 for i, op in enumerate(order)}

    def percent(t):
        return 100.0 * (t - start) / span

    out = ["<div class='axis'>"]
    for i in range(6):
        t = start + (end - start) * i / 5
        out.append("<span class='tick' style='left:%.3f%%'>%s</span>" % (percent(t), esc(show_time(t))))
    out.append("</div>")
    for name, row in _lanes(ops):
        out.append("<div class='lane'><span class='lane-name'>%s</span>" % esc(name))
        for op in row:
            left = percent(op.invoke)
            finish = completion(op)
            width = (100.0 - left) if finish == INF else max(percent(finish) - left, 0.3)
            classes = ["op", "kind-%s" % op.kind]
            if finish == INF:
                classes.append("unknown")
            if op.id in flagged:
                classes.append("flagged")
            number = position.get(id(op))
            badge = "<span class='order'>%d</span>" % number if number else ""
            out.append("<div class='%s' style='left:%.3f%%;width:%.3f%%' title='%s'>%s%s</div>"
                       % (" ".join(classes), left, width, esc(describe(op), quote=True), badge,
                          esc(short_label(op))))
        out.append("</div>")
    return "\n".join(out)

