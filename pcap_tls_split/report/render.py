"""The report and the record rows, written: one writer per format.

Rows are generated once (``finding_rows``, ``connection_rows``,
``record_table_rows``) as dicts and written by the writer of the format the
user asked for (``write_table``, ``write_csv``, ``write_jsonl``,
``write_json_list``); every command writes through these. This is the only
module of the package that writes what a user reads.
"""

import csv
import json

from ..tls import wire
from .model import to_plain

FINDING_COLUMNS = ("file", "stream", "client", "server", "code", "severity", "side", "frame", "message")
FINDING_CSV_COLUMNS = FINDING_COLUMNS + ("confidence", "time")
RECORD_COLUMNS = ("file", "stream", "side", "src", "index", "offset", "type", "version", "length",
                  "segments", "header_split", "first_frame", "last_frame", "time")
RECORD_CSV_COLUMNS = RECORD_COLUMNS + ("straddling", "coalesced", "complete")
RECORD_TABLE_COLUMNS = ("file", "stream", "side", "src", "index", "offset", "type", "version",
                        "length", "frames", "header", "coalesced", "complete")
RECORD_TABLE_HEADERS = RECORD_TABLE_COLUMNS[:-1] + ("",)


def tabulate(*args, **kwargs):
    """tabulate.tabulate, imported on first use (it costs a tenth of the start-up)."""
    from tabulate import tabulate as render
    return render(*args, **kwargs)


# -- the writers -------------------------------------------------------------------

def write_table(rows, columns, out, headers=None):
    """Rows (dicts) as a plain-text table of these columns."""
    out.write(tabulate([[row[c] for c in columns] for row in rows], headers=headers or columns,
                       tablefmt="simple", disable_numparse=True) + "\n")


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


def write_json_list(objects, out):
    """A JSON list, one object per line (written as they come)."""
    out.write("[")
    first = True
    for obj in objects:
        out.write(("\n" if first else ",\n") + json.dumps(obj))
        first = False
    out.write("\n]\n")


def write_json(obj, out):
    """One JSON document, indented."""
    json.dump(obj, out, indent=2)
    out.write("\n")


# -- rows ----------------------------------------------------------------------------

def finding_rows(connections):
    """One row per finding of the listed connections."""
    for conn in connections:
        for finding in conn.findings:
            yield {"file": conn.file, "stream": conn.stream, "client": conn.client,
                   "server": conn.server, "code": finding.code, "severity": finding.severity,
                   "side": finding.side, "frame": finding.frame, "message": finding.message,
                   "confidence": finding.confidence, "time": f"{finding.time:.6f}"}


def connection_rows(connections):
    """One row per listed connection without findings (``--all`` in a table)."""
    for conn in connections:
        if not conn.findings:
            yield {"file": conn.file, "stream": conn.stream, "client": conn.client,
                   "server": conn.server, "code": "-", "severity": "-", "side": "-",
                   "frame": "-", "message": f"TLS {conn.tls_version or '?'}, no finding"}


def record_dict(row):
    """A ``RecordRow`` as the contract's JSON object."""
    return to_plain(row)


def record_table_rows(rows):
    """``RecordRow``s as the records table shows them."""
    for r in rows:
        yield {"file": r.file, "stream": r.stream, "side": r.side, "src": r.src, "index": r.index,
               "offset": r.offset, "type": wire.CONTENT_TYPES.get(r.type, r.type),
               "version": r.version, "length": r.length, "frames": ",".join(map(str, r.frames)),
               "header": "split" if r.header_split else "",
               "coalesced": "yes" if r.coalesced else "",
               "complete": "" if r.complete else "INCOMPLETE"}


# -- the analyze report ----------------------------------------------------------------

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
        write_table(rows, FINDING_COLUMNS, out)
        out.write("\n")
    out.write(summary_text(report) + "\n")


def render_json(report, out):
    write_json(report.to_dict(), out)


def render_jsonl_connection(conn, out):
    write_jsonl((conn.to_dict(),), out)


def render_jsonl_summary(report, out):
    write_jsonl(({"summary": to_plain(report.summary),
                  "inputs": [to_plain(i) for i in report.inputs]},), out)


def render_csv(report, out):
    write_csv(finding_rows(report.connections), FINDING_CSV_COLUMNS, out)


RENDERERS = {"table": render_table, "json": render_json, "jsonl": render_jsonl_summary,
             "csv": render_csv}


# -- the records command -----------------------------------------------------------------

def render_records(rows, fmt, out):
    """Render record rows (an iterable, consumed as it comes for json/jsonl/csv)."""
    if fmt == "table":
        write_table(record_table_rows(rows), RECORD_TABLE_COLUMNS, out, headers=RECORD_TABLE_HEADERS)
    elif fmt == "csv":
        write_csv(map(record_dict, rows), RECORD_CSV_COLUMNS, out)
    elif fmt == "jsonl":
        write_jsonl(map(record_dict, rows), out)
    else:
        write_json_list(map(record_dict, rows), out)
