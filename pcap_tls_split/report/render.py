"""The report and the record rows, written: one writer per format.

Rows are generated once (``finding_rows``, ``connection_rows``,
``record_table_rows``) as dicts and written by the writer of the format the
user asked for (``write_table``, ``write_csv``, ``write_jsonl``,
``write_json_list``); every command writes through these. This is the only
module of the package that writes what a user reads.

A table fits a width (the terminal's; 0: no limit): each column is as wide as
its widest cell, and when the whole is too wide the columns that may be broken
are (a message at its words, a code at its ``_``, a list of frames at its
commas, a file at its ``/``), the widest first, their headings too. A ``View``
says how much the table shows: its width, ``verbose`` (the TLS metadata, the
reason a finding's confidence is not high, the filter that shows it in
Wireshark) and ``min_severity``.
"""

import csv
import dataclasses
import datetime
import json
import os
import re
import tempfile
import textwrap
from array import array
from dataclasses import dataclass
from typing import NamedTuple

from ..findings import CODES, Severity
from ..tls import wire
from .model import SCHEMA, TOOL, to_json, to_plain

FINDING_CSV_COLUMNS = ("file", "stream", "client", "server", "code", "severity", "side", "frame",
                       "message", "confidence", "time", "time_utc", "tls_version", "sni", "alpn",
                       "cipher", "community_id", "wireshark_filter", "confidence_reason")
RECORD_COLUMNS = ("file", "stream", "side", "src", "index", "offset", "type", "version", "length",
                  "segments", "header_split", "first_frame", "last_frame", "time")
RECORD_CSV_COLUMNS = RECORD_COLUMNS + ("straddling", "coalesced", "complete")
# A finding whose confidence is not high carries this mark after its severity in a table.
CONFIDENCE_MARKS = {"medium": "?", "low": "??"}
DEFAULT_PIPE_WIDTH = 120
TABLE_INDENT = 2          # rows under their connection's heading line


@dataclass(frozen=True)
class View:
    """How much a table shows, and how wide it may be."""

    width: int = DEFAULT_PIPE_WIDTH
    """Characters a line may take (0: no limit)."""
    verbose: bool = False
    """The TLS metadata of each connection, the reason for a confidence below high,
    each finding's Wireshark filter."""
    min_severity: Severity = None
    """Findings below it are not shown (None: ``low`` in a table, ``info`` with
    ``verbose``, every finding in JSON, JSONL and CSV)."""
    all_connections: bool = False
    """Every TLS connection listed (``--all``): one whose findings are all below
    ``min_severity`` is still shown, without them."""

    def lowest(self, table):
        """The lowest severity shown: for a table (``table``) or JSON/CSV."""
        if self.min_severity is not None:
            return Severity.of(self.min_severity)
        if table and not self.verbose:
            return Severity.LOW
        return Severity.INFO


class Column(NamedTuple):
    """A column of a table: the row key it shows, its heading, where its cells may break."""

    key: str
    header: str
    wrap: str = None
    """``words``, or a separator after which a cell may break (``_``, ``,``, ``/``);
    None: never broken."""


# -- the writers -------------------------------------------------------------------

WORDS_FLOOR = 30          # a message column is broken down to this width first...
WORDS_MIN = 10            # ...and to this one only when nothing else is left
TOKEN_MIN = 8             # a code, list or path column, broken at its separators


def write_table(rows, columns, out, width=0, indent=0):
    """Rows as a plain-text table of these ``Column``s that fits ``width`` (0: no limit).

    A row is a dict (one cell per column, broken over lines to fit its column;
    ``\\n`` in a cell starts a new line) or a string: a line across the table (a
    group's heading), broken at its words to fit. Dict rows and the heading are
    indented by ``indent`` spaces. tabulate lays out the grid (its ``plain``
    format, a rule under the heading), given cells already broken to the widths
    ``fit`` chose."""
    from tabulate import tabulate   # (here: it and importlib.metadata take ~25 ms json runs need not)
    rows = list(rows)
    columns = [c if isinstance(c, Column) else Column(c, c) for c in columns]
    cells = [[_cell(row, c) for c in columns] for row in rows if isinstance(row, dict)]
    widths = fit(columns, cells, width - indent if width else 0)
    broken = [["\n".join(_wrap(text, w, c.wrap)) for text, c, w in zip(cell, columns, widths)]
              for cell in cells]
    head = ["\n".join(_wrap(c.header, w, "words")) for c, w in zip(columns, widths)]
    grid = tabulate([head] + broken, tablefmt="plain", stralign="left", numalign="left",
                    disable_numparse=True).split("\n")
    shown = [max(len(line) for cell in [h] + [r[i] for r in broken] for line in cell.split("\n"))
             for i, h in enumerate(head)]
    pad = " " * indent
    height = max(h.count("\n") for h in head) + 1
    lines = [(pad + line).rstrip() for line in grid[:height]]
    lines.append(pad + "  ".join("-" * w for w in shown))
    body = iter(grid[height:])
    count = iter(broken)
    for row in rows:
        if isinstance(row, dict):
            lines += [(pad + next(body)).rstrip()
                      for _ in range(max(c.count("\n") for c in next(count)) + 1)]
        else:
            lines += (textwrap.wrap(row, width, subsequent_indent="    ", break_on_hyphens=False)
                      if width else [row]) or [""]
    out.write("\n".join(lines) + "\n")


def _cell(row, column):
    value = row.get(column.key)
    return "" if value is None else str(value)


def fit(columns, cells, width):
    """Column widths: each column's widest cell, made narrower where the line would
    be wider than ``width`` (0: no limit). Headings break first, then messages down
    to ``WORDS_FLOOR``, then codes, lists and paths, then messages down to
    ``WORDS_MIN``. A column that may not be broken keeps its width."""
    count = len(columns)
    content = [max((len(line) for row in cells for line in row[i].split("\n")), default=0)
               for i in range(count)]
    natural = [max(content[i], len(c.header)) for i, c in enumerate(columns)]
    widths = list(natural)
    if not width:
        return widths
    word = [max((len(w) for w in c.header.split()), default=0) for c in columns]
    header_floor = [max(content[i], word[i]) for i in range(count)]
    floors = []
    for i, c in enumerate(columns):
        if c.wrap is None:
            floors.append((header_floor[i],) * 4)
        elif c.wrap == "words":
            floors.append((header_floor[i], min(natural[i], max(WORDS_FLOOR, word[i])),
                           None, min(natural[i], max(WORDS_MIN, word[i]))))
        else:
            floors.append((header_floor[i], None, min(natural[i], max(TOKEN_MIN, word[i])), None))
    budget = width - 2 * (count - 1)
    for phase in range(4):
        while sum(widths) > budget:
            shrinkable = [i for i in range(count)
                          if floors[i][phase] is not None and widths[i] > floors[i][phase]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
    return widths


def _wrap(text, width, how):
    """The lines of one cell at this width."""
    lines = []
    for part in text.split("\n"):
        if len(part) <= width or how is None or width <= 0:
            lines.append(part)
        elif how == "words":
            lines += textwrap.wrap(part, width, break_on_hyphens=False) or [""]
        else:
            lines += _wrap_at(part, width, how)
    return lines


def _wrap_at(text, width, separator):
    """``text`` broken after its ``separator``s (inside a piece when it is wider still)."""
    pieces = re.findall(rf"[^{re.escape(separator)}]*{re.escape(separator)}|[^{re.escape(separator)}]+",
                        text)
    lines, line = [], ""
    for piece in pieces:
        if len(line) + len(piece) <= width:
            line += piece
            continue
        if line:
            lines.append(line)
        while len(piece) > width:
            lines.append(piece[:width])
            piece = piece[width:]
        line = piece
    if line:
        lines.append(line)
    return lines


def write_csv(rows, columns, out):
    """Rows (dicts) as CSV with a header line; keys beyond ``columns`` are left out."""
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)


def write_jsonl(objects, out):
    """One JSON object per line."""
    for obj in objects:
        out.write(json.dumps(obj) + "\n")


def write_json_list(objects, out, text=json.dumps):
    """A JSON list, one object per line (written as they come); ``text``: an object's
    JSON text."""
    out.write("[")
    first = True
    for obj in objects:
        out.write(("\n" if first else ",\n") + text(obj))
        first = False
    out.write("\n]\n")


def write_json(obj, out):
    """One JSON document, indented."""
    json.dump(obj, out, indent=2)
    out.write("\n")


# -- words ---------------------------------------------------------------------------

def iso_time(seconds, date=True):
    """Seconds since the epoch as ISO 8601 in UTC, to the millisecond:
    ``2026-11-24T10:21:34.774Z`` (``date=False``: ``10:21:34.774``)."""
    if seconds is None:
        return ""
    ms = int(round(seconds * 1000))
    moment = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    clock = f"{moment:%H:%M:%S}.{ms % 1000:03d}"
    return f"{moment:%Y-%m-%d}T{clock}Z" if date else clock


def short_names(paths):
    """``{path: the shortest tail of it that tells it apart from the others}``: a file's
    name, with as many of its folders as it takes (``ndpi/tls.pcap``)."""
    unique = sorted(set(paths))
    parts = {p: [x for x in p.split(os.sep) if x] or [p] for p in unique}
    names = {}
    for path in unique:
        for k in range(1, len(parts[path]) + 1):
            tail = parts[path][-k:]
            if not any(parts[other][-k:] == tail for other in unique if other != path):
                break
        names[path] = os.sep.join(tail) if path != "-" else "stdin"
    return names


def quality_marks(conn):
    """What the capture missed on a connection, in words (empty: nothing)."""
    q = conn.quality
    marks = []
    if q.gaps:
        marks.append(f"{q.gaps} gap(s)")
    if q.snap_cut:
        marks.append(f"{q.snap_cut} frame(s) cut by the snap length")
    if q.midstream:
        marks.append("started mid-stream")
    if conn.role_inferred:
        marks.append("roles inferred")
    if q.resyncs:
        marks.append(f"record framing lost {q.resyncs} time(s)")
    if q.conflicts:
        marks.append(f"{q.conflicts} overlap conflict(s)")
    return marks


def alert_text(alert):
    return f"{alert.side} {alert.level} {alert.description} (frame {alert.frame})"


# -- rows ----------------------------------------------------------------------------

def shown_findings(conn, lowest):
    """The findings of a connection at or above ``lowest``."""
    return [f for f in conn.findings if f.severity >= lowest]


def finding_rows(connections, lowest=Severity.INFO):
    """One row per finding (at or above ``lowest``) of the listed connections, with
    the connection's facts (the CSV's row)."""
    for conn in connections:
        for finding in shown_findings(conn, lowest):
            yield dict(_connection_cells(conn), code=finding.code, severity=str(finding.severity),
                       side=finding.side, frame=finding.frame, message=finding.message,
                       confidence=finding.confidence, time=f"{finding.time:.6f}",
                       time_utc=iso_time(finding.time), wireshark_filter=finding.wireshark_filter,
                       confidence_reason=finding.evidence.get("confidence_reason", ""))


def connection_rows(connections, lowest=Severity.INFO):
    """One row per listed connection with no finding shown (``--all``), as ``finding_rows``."""
    for conn in connections:
        if not shown_findings(conn, lowest):
            yield dict(_connection_cells(conn), code="", severity="", side="", frame="", message="",
                       confidence="", time=f"{conn.start:.6f}", time_utc=iso_time(conn.start),
                       wireshark_filter=f"tcp.stream eq {conn.stream}", confidence_reason="")


def _connection_cells(conn):
    return {"file": conn.file, "stream": conn.stream, "client": conn.client, "server": conn.server,
            "tls_version": conn.tls_version or "", "sni": conn.sni or "", "alpn": conn.alpn or "",
            "cipher": conn.cipher or "", "community_id": conn.community_id or ""}


def record_dict(row):
    """A ``RecordRow`` as the contract's JSON object."""
    return to_plain(row)


def record_line(row):
    """A ``RecordRow``'s JSONL line: ``record_dict``'s JSON text (made without the dict)."""
    return to_json(row) + "\n"


def record_table_rows(rows, plaintexts=None):
    """``RecordRow``s as the records table shows them: per connection a heading line
    (file, stream, client and server), then a row per record; ``plaintexts`` (one per
    row, or None) fill a ``plaintext`` column."""
    rows = list(rows)
    names = short_names(r.file for r in rows)
    ends = {}
    for r in rows:
        ends.setdefault((r.file, r.stream), {}).setdefault(r.side, r.src)
    out, current = [], None
    for i, r in enumerate(rows):
        if (r.file, r.stream) != current:
            current = (r.file, r.stream)
            if out:
                out.append("")
            sides = ends[current]
            out.append(f"{names[r.file]}, stream {r.stream}: {sides.get('client', '?')} -> "
                       f"{sides.get('server', '?')}")
        row = {"side": r.side, "index": r.index, "offset": r.offset,
               "type": wire.CONTENT_TYPES.get(r.type, r.type), "version": r.version,
               "length": r.length, "frames": ",".join(map(str, r.frames)),
               "notes": ", ".join(note for note, yes in (("header split", r.header_split),
                                                         ("coalesced", r.coalesced)) if yes),
               "complete": "" if r.complete else f"no ({r.missing} B missing)" if r.missing else "no"}
        if plaintexts is not None:
            row["plaintext"] = plaintexts[i] or ""
        out.append(row)
    return out


def record_columns(rows):
    """The records table's columns for these rows (of ``record_table_rows``):
    ``complete`` only when a record is not, ``plaintext`` when the rows have it. ``notes``
    says whether its header was split over segments and whether it shares a segment
    with another record (coalesced)."""
    cells = [r for r in rows if isinstance(r, dict)]
    columns = [Column("side", "side"), Column("index", "index"), Column("offset", "offset"),
               Column("type", "type", "_"), Column("version", "version"), Column("length", "length"),
               Column("frames", "frames", ","), Column("notes", "notes", "words")]
    if any(r["complete"] for r in cells):
        columns.append(Column("complete", "complete", "words"))
    if any("plaintext" in r for r in cells):
        columns.append(Column("plaintext", "plaintext", "words"))
    return columns


def write_records_table(rows, out, width=0, plaintexts=None):
    """The records table of ``RecordRow``s (in the order given)."""
    table = record_table_rows(rows, plaintexts)
    if table:
        write_table(table, record_columns(table), out, width, indent=TABLE_INDENT)


# -- the analyze report ----------------------------------------------------------------

FINDING_TABLE_COLUMNS = (Column("time", "time (UTC)"), Column("frame", "frame"), Column("side", "side"),
                         Column("severity", "severity"), Column("code", "code", "_"),
                         Column("message", "message", "words"))


def table_rows(report, view):
    """The analyze table: per listed connection a heading line, then a row per finding
    shown. Returns (rows, findings hidden below the lowest severity, marks used)."""
    lowest = view.lowest(table=True)
    names = short_names(c.file for c in report.connections)
    rows, hidden, marks = [], 0, set()
    listed = sorted(report.connections, key=lambda c: (c.file, c.stream))
    for conn in listed:
        shown = shown_findings(conn, lowest)
        hidden += len(conn.findings) - len(shown)
        if not shown and conn.findings and not view.all_connections:
            continue
        if rows:
            rows.append("")     # a blank line between two connections
        rows.append(_heading(conn, names[conn.file], shown, view))
        if view.verbose:
            rows += _metadata(conn)
        day = iso_time(conn.start)[:10]
        for f in sorted(shown, key=lambda f: f.frame):
            mark = CONFIDENCE_MARKS.get(f.confidence, "")
            if mark:
                marks.add(mark)
            stamp = iso_time(f.time)
            message = f.message
            if view.verbose:
                if mark:
                    reason = f.evidence.get("confidence_reason") or f.evidence.get("note")
                    message += f"\n({f.confidence} confidence{': ' + reason if reason else ''})"
                message += f"\nfilter: {f.wireshark_filter}"
            rows.append({"time": stamp[11:-1] if stamp[:10] == day else stamp, "frame": f.frame,
                         "side": f.side, "severity": f"{f.severity}{mark}", "code": f.code,
                         "message": message})
    return rows, hidden, marks


def _heading(conn, name, shown, view):
    words = [f"{name}, stream {conn.stream}: {conn.client} -> {conn.server}, "
             f"TLS {conn.tls_version or '?'}, {iso_time(conn.start)}"]
    quality = quality_marks(conn)
    if quality:
        words.append(f" [capture: {', '.join(quality)}]")
    if not conn.findings:
        words.append(": no finding")
    elif not shown:
        words.append(f": no finding at or above {view.lowest(table=True)}")
    return "".join(words)


def _metadata(conn):
    """-v: the connection's handshake in clear, its alerts and id, on lines of their own."""
    said = [f"sni {conn.sni or '-'}", f"alpn {conn.alpn or '-'}", f"cipher {conn.cipher or '-'}",
            f"community_id {conn.community_id}", f"ended {iso_time(conn.end)}"]
    q = conn.quality
    if q.retransmissions or q.out_of_order:
        said.append(f"{q.retransmissions} retransmission(s), {q.out_of_order} out of order")
    lines = ["  " + ", ".join(said)]
    if conn.alerts:
        lines.append("  alerts in clear: " + "; ".join(alert_text(a) for a in conn.alerts))
    return lines


def summary_rows(report):
    """The codes of the summary: by severity (the code's own), then how many
    connections, then name."""
    by_code = report.summary.by_code
    def order(item):
        code, count = item
        known = CODES.get(code)
        return (-(known.severity.rank if known else -1), -count, code)
    for code, count in sorted(by_code.items(), key=order):
        known = CODES.get(code)
        yield {"code": code, "severity": str(known.severity) if known else "", "connections": count}


SUMMARY_COLUMNS = (Column("code", "code", "_"), Column("severity", "severity"),
                   Column("connections", "connections"))


def write_summary(report, out, width=0):
    s = report.summary
    out.write(f"{s.connections} TCP connection(s), {s.tls_connections} TLS, {s.flagged} flagged "
              "(a finding at medium or above)\n")
    if s.by_code:
        write_table(summary_rows(report), SUMMARY_COLUMNS, out, width)
    write_correlation(s.correlation, out, width)


CORRELATION_COLUMNS = (Column("closes", "closes"), Column("connections", "connections"),
                       Column("aligned", "after a segment on a record boundary"),
                       Column("straddled", "last record straddled segments"))


def write_correlation(corr, out, width=0):
    """The contingency table of premature closes, and the sentence a triage script wants."""
    if not corr.connections:
        return
    rows = []
    for name, row in (("premature", corr.premature), ("other", corr.not_premature)):
        if row["total"]:
            rows.append({"closes": name, "connections": row["total"], "aligned": row["aligned"],
                         "straddled": row["last_record_straddled"]})
    out.write("\n")
    write_table(rows, CORRELATION_COLUMNS, out, width)
    p = corr.premature
    if p["total"]:
        aligned = f"all {p['total']}" if p["aligned"] == p["total"] else f"{p['aligned']} of {p['total']}"
        sentence = (f"{p['total']} of {corr.connections} closed prematurely; {aligned} closed right "
                    "after a segment that ended on a record boundary")
        out.write("\n".join(textwrap.wrap(sentence, width) if width else [sentence]) + "\n")


def render_table(report, out, view=View()):
    rows, hidden, marks = table_rows(report, view)
    if rows:
        write_table(rows, FINDING_TABLE_COLUMNS, out, view.width, indent=TABLE_INDENT)
    notes = []
    if marks:
        notes.append("? after a severity: medium confidence, ??: low confidence"
                     + ("" if view.verbose else " (-v says why)"))
    if hidden:
        notes.append(f"{hidden} finding(s) below {view.lowest(table=True)} not shown "
                     "(-v or --min-severity info shows them)")
    for note in notes:
        out.write("\n".join(textwrap.wrap(note, view.width) if view.width else [note]) + "\n")
    if rows or notes:
        out.write("\n")
    write_summary(report, out, view.width)


def visible(report, view):
    """The report as JSON shows it: with ``--min-severity``, the findings below it left
    out (and the connections left with none, unless they were listed as all are)."""
    if view.min_severity is None:
        return report
    lowest = view.lowest(table=False)
    kept = []
    for conn in report.connections:
        shown = tuple(shown_findings(conn, lowest))
        if shown or not conn.findings or view.all_connections:
            kept.append(dataclasses.replace(conn, findings=shown))
    return dataclasses.replace(report, connections=tuple(kept))


def render_json(report, out, view=View()):
    """The JSON document of a report that holds its connections."""
    document = JsonDocument(view)
    for conn in report.connections:
        document.add(shown_of(conn, view))
    document.write(report, out)


class Shown(NamedTuple):
    """What the writers that stream need of one listed connection: its place, its
    JSONL line and its worst finding. Made where the report is made (``shown_of``, as
    ``pcap_tls_split.analyze``'s ``prepare``): a worker process sends only this."""

    file: str
    stream: int
    line: str
    """Its JSONL line (None: nothing of it is shown, or no line was asked for)."""
    worst: Severity
    """Its worst finding's ``Severity`` (None: no finding)."""


def shown_of(conn, view=View(), line=True):
    """The ``Shown`` of a connection's report (``line``: with its JSONL line)."""
    worst = None
    for finding in conn.findings:
        if worst is None or finding.severity > worst:
            worst = finding.severity
    return Shown(conn.file, conn.stream, jsonl_connection(conn, view) if line else None, worst)


class Listed:
    """How many connections were listed and their worst finding's ``Severity``
    (None: no finding), counted as they end (``Report.worst`` without the report
    holding them): ``add`` takes their ``Shown``."""

    def __init__(self):
        self.count = 0
        self.worst = None

    def add(self, shown):
        self.count += 1
        worst = shown.worst
        if worst is not None and (self.worst is None or worst > self.worst):
            self.worst = worst


class JsonDocument:
    """``--format json`` without holding the connections: each one is encoded (by
    the C encoder: one line per connection) as it ends, into a spool file, its place
    noted (input, stream); ``write`` then writes the document: schema, tool and
    inputs, the connections in order (inputs in order, streams in order within one)
    copied from the spool, the summary."""

    def __init__(self, view=View()):
        self.view = view
        self._spool = None
        self._files = {}            # path -> its number, in the order first seen
        self._keys = array("q")     # (file number << 32 | stream) of each connection
        self._offsets = array("q")  # where its text starts in the spool
        self._sizes = array("q")

    def add(self, shown):
        """A listed connection, by its ``Shown`` (made with this document's view)."""
        line = shown.line
        if line is None:
            return
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="pcap-tls-split-json-")
        data = line[:-1].encode()
        number = self._files.setdefault(shown.file, len(self._files))
        self._keys.append(number << 32 | shown.stream)
        self._offsets.append(self._spool.tell())
        self._sizes.append(len(data))
        self._spool.write(data)

    def write(self, report, out):
        """The whole document (``report``: its inputs and summary)."""
        head = {"schema": SCHEMA, "tool": dict(TOOL)}
        out.write("{\n")
        for key, value in head.items():
            out.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
        inputs = [to_plain(i) for i in report.inputs]
        out.write('  "inputs": [' + ",".join("\n    " + json.dumps(i) for i in inputs)
                  + ("\n  ],\n" if inputs else "],\n"))
        out.write('  "connections": [')
        keys, offsets, sizes = self._keys, self._offsets, self._sizes
        spool = self._spool
        if spool is not None:
            spool.flush()
            order = sorted(range(len(keys)), key=keys.__getitem__)
            sep = "\n    "
            for i in order:
                spool.seek(offsets[i])
                out.write(sep + spool.read(sizes[i]).decode())
                sep = ",\n    "
            spool.close()
            self._spool = None
            out.write("\n  ")
        out.write("],\n")
        out.write('  "summary": ' + json.dumps(to_plain(report.summary)) + "\n}\n")


def jsonl_connection(conn, view=View()):
    """One connection as its JSONL line (None: nothing of it is shown)."""
    lowest = view.lowest(table=False)
    shown = tuple(shown_findings(conn, lowest))
    if conn.findings and not shown and not view.all_connections:
        return None
    if len(shown) != len(conn.findings):
        conn = dataclasses.replace(conn, findings=shown)
    return to_json(conn) + "\n"


def render_jsonl_summary(report, out, view=View()):
    write_jsonl(({"inputs": [to_plain(i) for i in report.inputs],
                  "summary": to_plain(report.summary)},), out)


def render_csv(report, out, view=View()):
    lowest = view.lowest(table=False)
    rows = list(finding_rows(report.connections, lowest))
    if view.all_connections:
        rows += connection_rows(report.connections, lowest)
    rows.sort(key=lambda r: (r["file"], r["stream"], r["frame"] if r["frame"] != "" else 0))
    write_csv(rows, FINDING_CSV_COLUMNS, out)


RENDERERS = {"table": render_table, "json": render_json, "jsonl": render_jsonl_summary,
             "csv": render_csv}


# -- the records command -----------------------------------------------------------------

def render_records(rows, fmt, out, width=0):
    """Render record rows (an iterable, consumed as it comes for json/jsonl/csv)."""
    if fmt == "table":
        write_records_table(rows, out, width)
    elif fmt == "csv":
        write_csv(map(record_dict, rows), RECORD_CSV_COLUMNS, out)
    elif fmt == "jsonl":
        for row in rows:
            out.write(record_line(row))
    else:
        write_json_list(rows, out, to_json)
