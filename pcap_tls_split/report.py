"""Findings -> report: the report's facts and their renderings.

The report is a tree of frozen dataclasses (what ``pcap_tls_split.analyze``
returns); ``to_dict`` gives the JSON contract of SIGNATURES.md. Rows are made
once (``finding_rows``, ``record_rows``) and rendered as a table (tabulate),
JSON, JSONL or CSV. This is the only module that writes to the terminal.
"""

import csv
import dataclasses
import json
from dataclasses import dataclass, field

from . import __version__, tls
from .findings import SEVERITIES


def tabulate(*args, **kwargs):
    """tabulate.tabulate, imported on first use (it costs a tenth of the start-up)."""
    from tabulate import tabulate as render
    return render(*args, **kwargs)

SCHEMA = 1


@dataclass(frozen=True, slots=True)
class RecordStats:
    """How one side's records sat against its segments."""

    total: int = 0
    straddling: int = 0
    header_split: int = 0
    coalesced: int = 0


@dataclass(frozen=True, slots=True)
class CloseSummary:
    """Who closed first, how, and how far into the peer's stream it had received."""

    first_closer: str = None
    """``client``, ``server`` or None when neither side closed."""
    kind: str = None
    """``fin`` or ``rst``."""
    time: float = None
    reach: int = None
    """Offset into the peer's side stream that the first closer had received."""
    reach_estimated: bool = False
    """No ACK on the close: reach is the end of the peer's bytes captured before it."""
    frame: int = None
    aligned: bool = None
    """The last peer segment received before the close ended exactly on a record boundary."""
    last_record_straddled: bool = None
    """The last peer record wholly received before the close came in more than one segment."""


@dataclass(frozen=True, slots=True)
class Quality:
    """What the capture missed or repeated on this connection."""

    gaps: int = 0
    retransmissions: int = 0
    out_of_order: int = 0
    midstream: bool = False
    conflicts: int = 0
    snap_cut: int = 0
    resyncs: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """One TLS connection: its parties, records, close and findings."""

    file: str
    stream: int
    """Wireshark's ``tcp.stream`` (filter with ``tcp.stream eq N``)."""
    client: str
    server: str
    role_inferred: bool
    start: float
    end: float
    tls_version: str
    records: dict
    """``{"client": RecordStats, "server": RecordStats}``."""
    close: CloseSummary
    quality: Quality
    findings: tuple = ()

    def to_dict(self):
        return _plain(self)


@dataclass(frozen=True, slots=True)
class InputReport:
    """One input file: what was read and what went wrong."""

    path: str
    format: str = None
    packets: int = 0
    tcp_connections: int = 0
    tls_connections: int = 0
    errors: tuple = ()


# Findings that say a side closed before it had what the peer was sending.
PREMATURE_CODES = ("close_inside_record", "close_before_pending_records", "close_before_peer_finished")


def is_premature(conn):
    """A connection closed prematurely: one of PREMATURE_CODES at medium or above."""
    return any(f.code in PREMATURE_CODES and SEVERITIES.index(f.severity) >= SEVERITIES.index("medium")
               for f in conn.findings)


@dataclass(frozen=True, slots=True)
class Correlation:
    """Premature closes against how the close sat on the peer's segments and records.

    Counted over the TLS connections whose first close can be placed (a close and
    peer records before it). ``cells`` is the contingency table: one entry per
    (premature, aligned, last_record_straddled) with its number of connections.
    """

    connections: int = 0
    premature: dict = field(default_factory=dict)
    not_premature: dict = field(default_factory=dict)
    cells: tuple = ()

    @staticmethod
    def from_counts(counts):
        """``counts``: {(premature, aligned, straddled): n}."""
        def row(flag):
            mine = {k: n for k, n in counts.items() if k[0] == flag}
            return {"total": sum(mine.values()),
                    "aligned": sum(n for k, n in mine.items() if k[1]),
                    "last_record_straddled": sum(n for k, n in mine.items() if k[2])}
        cells = tuple({"premature": k[0], "aligned": k[1], "last_record_straddled": k[2], "connections": n}
                      for k, n in sorted(counts.items(), key=lambda kv: (not kv[0][0], not kv[0][1], kv[0][2])))
        return Correlation(connections=sum(counts.values()), premature=row(True),
                           not_premature=row(False), cells=cells)


@dataclass(frozen=True, slots=True)
class Summary:
    connections: int = 0
    tls_connections: int = 0
    flagged: int = 0
    by_code: dict = field(default_factory=dict)
    correlation: Correlation = field(default_factory=Correlation)


@dataclass(frozen=True, slots=True)
class Report:
    """What ``analyze`` returns: the inputs, the connections listed, a summary."""

    inputs: tuple
    connections: tuple
    summary: Summary

    def to_dict(self):
        return {"schema": SCHEMA,
                "tool": {"name": "pcap-tls-split", "version": __version__},
                "inputs": [_plain(i) for i in self.inputs],
                "connections": [_plain(c) for c in self.connections],
                "summary": _plain(self.summary)}

    def worst(self):
        """Index in SEVERITIES of the worst finding listed, -1 if none."""
        return max((SEVERITIES.index(f.severity) for c in self.connections for f in c.findings),
                   default=-1)

    @property
    def unreadable(self):
        """Inputs that could not be read at all."""
        return [i for i in self.inputs if i.format is None]


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One TLS record of the ``records`` command."""

    file: str
    stream: int
    side: str
    src: str
    index: int
    offset: int
    type: int
    version: str
    length: int
    segments: int
    header_split: bool
    first_frame: int
    last_frame: int
    time: float
    straddling: bool = False
    coalesced: bool = False
    frames: tuple = ()
    complete: bool = True
    missing: int = 0


def _plain(value):
    """Dataclasses to dicts, tuples to lists, floats rounded to the microsecond."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


# -- rendering --------------------------------------------------------------------

FINDING_COLUMNS = ("file", "stream", "client", "server", "code", "severity", "side", "frame", "message")
RECORD_COLUMNS = ("file", "stream", "side", "src", "index", "offset", "type", "version", "length",
                  "segments", "header_split", "first_frame", "last_frame", "time")


def finding_rows(connections):
    for conn in connections:
        for finding in conn.findings:
            yield {"file": conn.file, "stream": conn.stream, "client": conn.client,
                   "server": conn.server, "code": finding.code, "severity": finding.severity,
                   "side": finding.side, "frame": finding.frame, "message": finding.message}


def connection_rows(connections):
    """One row per listed connection without findings (``--all`` in a table)."""
    for conn in connections:
        if not conn.findings:
            yield {"file": conn.file, "stream": conn.stream, "client": conn.client,
                   "server": conn.server, "code": "-", "severity": "-", "side": "-",
                   "frame": "-", "message": f"TLS {conn.tls_version or '?'}, no finding"}


def summary_text(report):
    s = report.summary
    lines = [f"{s.connections} TCP connection(s), {s.tls_connections} TLS, {s.flagged} flagged"]
    if s.by_code:
        lines.append(tabulate(sorted(s.by_code.items(), key=lambda kv: (-kv[1], kv[0])),
                              headers=("code", "connections"), tablefmt="simple", disable_numparse=True))
    lines += correlation_text(s.correlation)
    for inp in report.inputs:
        for error in inp.errors:
            lines.append(f"error: {error}")
    return "\n".join(lines)


def correlation_text(corr):
    """The contingency table of premature closes, and the sentence a triage script wants."""
    if not corr.connections:
        return []
    header = ("closes", "connections", "after a segment on a record boundary",
              "last record straddled segments")
    rows = []
    for name, row in (("premature", corr.premature), ("other", corr.not_premature)):
        if row["total"]:
            rows.append((name, row["total"], row["aligned"], row["last_record_straddled"]))
    lines = ["", tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True)]
    p = corr.premature
    if p["total"]:
        aligned = f"all {p['total']}" if p["aligned"] == p["total"] else f"{p['aligned']} of {p['total']}"
        lines.append(f"{p['total']} of {corr.connections} closed prematurely; {aligned} closed right "
                     "after a segment that ended on a record boundary")
    return lines


def render_table(report, out):
    rows = list(finding_rows(report.connections)) + list(connection_rows(report.connections))
    rows.sort(key=lambda r: (r["file"], r["stream"], r["frame"] if r["frame"] != "-" else 0))
    if rows:
        out.write(tabulate([[r[c] for c in FINDING_COLUMNS] for r in rows],
                           headers=FINDING_COLUMNS, tablefmt="simple", disable_numparse=True) + "\n\n")
    out.write(summary_text(report) + "\n")


def render_json(report, out):
    json.dump(report.to_dict(), out, indent=2)
    out.write("\n")


def render_jsonl_connection(conn, out):
    out.write(json.dumps(conn.to_dict()) + "\n")


def render_jsonl_summary(report, out):
    out.write(json.dumps({"summary": _plain(report.summary),
                          "inputs": [_plain(i) for i in report.inputs]}) + "\n")


def render_csv(report, out):
    writer = csv.DictWriter(out, fieldnames=FINDING_COLUMNS + ("confidence", "time"))
    writer.writeheader()
    for conn in report.connections:
        for f in conn.findings:
            writer.writerow({"file": conn.file, "stream": conn.stream, "client": conn.client,
                             "server": conn.server, "code": f.code, "severity": f.severity,
                             "side": f.side, "frame": f.frame, "message": f.message,
                             "confidence": f.confidence, "time": f"{f.time:.6f}"})


def record_dict(row):
    return _plain(row)


def render_records(rows, fmt, out):
    """Render record rows (an iterable, consumed as it comes for json/jsonl/csv)."""
    if fmt == "table":
        table = []
        for r in rows:
            table.append([r.file, r.stream, r.side, r.src, r.index, r.offset,
                          tls.CONTENT_TYPES.get(r.type, r.type), r.version, r.length,
                          ",".join(map(str, r.frames)),
                          "split" if r.header_split else "",
                          "yes" if r.coalesced else "", "" if r.complete else "INCOMPLETE"])
        out.write(tabulate(table, headers=("file", "stream", "side", "src", "index", "offset", "type",
                                           "version", "length", "frames", "header", "coalesced", ""),
                           tablefmt="simple", disable_numparse=True) + "\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=RECORD_COLUMNS + ("straddling", "coalesced", "complete"))
        writer.writeheader()
        for r in rows:
            d = record_dict(r)
            writer.writerow({k: d[k] for k in writer.fieldnames})
        return
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(record_dict(r)) + "\n")
        return
    out.write("[")
    first = True
    for r in rows:
        out.write(("\n" if first else ",\n") + json.dumps(record_dict(r)))
        first = False
    out.write("\n]\n")
