"""``verify``: our records and closes against Wireshark's, per connection and side.

tshark reads each capture again, only on the TLS connections we found, with
``-d tcp.port==P,tls`` for the server ports where TLS starts at the first byte
(never a STARTTLS port: tshark's own dissector there handles the plaintext
prologue), a display filter down to those ports and the frames that matter
(TLS, FIN, RST) and a protocol filter (``-j``) down to the subtrees it reads.
Connections are matched by ``tcp.stream`` and endpoints; where Wireshark
numbers a connection differently (its SOCKS dissector takes stream numbers),
by endpoints, and the difference is reported.
"""

import dataclasses
import textwrap
from collections import defaultdict
from dataclasses import dataclass

from ..api import expand_inputs
from ..report import InputReport, render, to_plain
from ..report.model import SCHEMA, TOOL
from ..tls import wire as tls
from .dissect import BridgeRun, WiresharkView, decode_as, our_connection, port_of, ports_filter
from .tshark import (VERIFY_SUBTREES, TsharkFailed, ended_on_signals, find_tshark, timeout_for,
                     tshark_packets, tshark_parameters)

SIGNAL_POLL = 0.1   # seconds between two looks for a signal while verify -j waits for its threads

# -- verify --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SideCheck:
    """One side of a connection: our records and closes against Wireshark's."""

    side: str
    """``client`` or ``server``: the sender of these records."""
    src: str
    records: int
    """Our complete records."""
    wireshark_records: int
    """Wireshark's complete records (SSLv2 ones left out)."""
    fin: int
    """Frame of our first FIN of this side (None: none)."""
    wireshark_fin: int
    rst: int
    wireshark_rst: int
    difference: dict = None
    """The first record where the two differ: ``{"index", "ours", "wireshark"}``, each a
    record (``offset``, ``type``, ``length``, frames) or None where one view has none."""

    @property
    def agree(self):
        return self.difference is None and self.fin == self.wireshark_fin and self.rst == self.wireshark_rst


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """One TLS connection: whether Wireshark sees the same records and closes."""

    file: str
    stream: int
    wireshark_stream: int
    """Wireshark's ``tcp.stream`` for it (None: Wireshark showed no TLS, FIN or RST of it)."""
    client: str
    server: str
    sides: tuple
    """``SideCheck`` of the client, then of the server."""

    @property
    def agree(self):
        return self.stream == self.wireshark_stream and all(s.agree for s in self.sides)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` returns: the inputs and each TLS connection compared."""

    inputs: tuple
    connections: tuple
    not_compared: tuple = ()
    """Paths of the inputs tshark could not read (the reason is in their ``errors``)."""

    @property
    def agree(self):
        return all(c.agree for c in self.connections)

    @property
    def unreadable(self):
        """Inputs that could not be read at all, by us or by tshark."""
        return [i for i in self.inputs if i.format is None or i.path in self.not_compared]

    def to_dict(self):
        connections = []
        for c in self.connections:
            connections.append({
                "file": c.file, "stream": c.stream, "wireshark_stream": c.wireshark_stream,
                "client": c.client, "server": c.server, "agree": c.agree,
                "sides": {s.side: {"src": s.src, "agree": s.agree,
                                   "records": {"ours": s.records, "wireshark": s.wireshark_records},
                                   "fin": {"ours": s.fin, "wireshark": s.wireshark_fin},
                                   "rst": {"ours": s.rst, "wireshark": s.wireshark_rst},
                                   "difference": s.difference} for s in c.sides}})
        agree = sum(1 for c in self.connections if c.agree)
        return {"schema": SCHEMA, "tool": dict(TOOL),
                "inputs": [to_plain(i) for i in self.inputs], "connections": connections,
                "summary": {"connections": len(self.connections), "agree": agree,
                            "differ": len(self.connections) - agree}}


def _record_view(record, frames):
    return {"offset": record.offset, "type": record.type, "length": record.length, "frames": frames}


def _same(a, b):
    """Our record and Wireshark's are the same one (an SSLv2 record by its size: Wireshark
    shows no length for encrypted ones)."""
    if a.type == tls.SSLV2 or b.type == tls.SSLV2:
        return (a.offset, a.type, a.header_length + a.length) == (b.offset, b.type, b.size)
    return (a.offset, a.type, a.length) == (b.offset, b.type, b.length)


def _past_a_gap(mine, i):
    """Our record ``i`` lies past a capture hole (inside it, or after one): where
    Wireshark's reassembly stops and ours carries on."""
    record = mine[i]
    if record.missing:
        return True
    before = mine[i - 1] if i else None
    return before is not None and record.offset != before.offset + before.header_length + before.length


def _compare_side(ours, view, key):
    mine = sorted((r for r in ours.records if r.complete), key=lambda r: r.offset)
    theirs = [r for _, r in sorted(view.records.get(key, {}).items()) if r.complete] if key else []
    difference = None
    for i in range(max(len(mine), len(theirs))):
        a = mine[i] if i < len(mine) else None
        b = theirs[i] if i < len(theirs) else None
        if a is not None and b is not None and _same(a, b):
            continue
        if b is None and ours.gaps and _past_a_gap(mine, i):
            break             # Wireshark stops at a capture hole; we carry on: agree
        difference = {"index": i,
                      "ours": None if a is None else _record_view(a, list(a.frames)),
                      "wireshark": None if b is None else _record_view(b, [b.frame])}
        break
    return SideCheck(ours.role, ours.src, len(mine), len(theirs), ours.fin,
                     view.fin.get(key) if key else None, ours.rst,
                     view.rst.get(key) if key else None, difference)


def _verify_file(path, options, tshark, timeout):
    connections = {}
    rows = defaultdict(list)

    def on_tls(conn):
        connections[conn.stream] = our_connection(conn)

    run = BridgeRun(path, options, on_record=lambda row: rows[row.stream].append(row), on_tls=on_tls)
    inp = run.run()
    for stream, conn in connections.items():
        for row in rows.get(stream, ()):
            conn.sides[row.side].records.append(row)
    views = {}
    if connections and inp.format is not None:
        conns = list(connections.values())
        force = decode_as(conns)
        try:
            view = _verify_view(path, conns, force, tshark, timeout)
            views = {stream: view for stream in connections}
            # a STARTTLS protocol tshark does not follow (IRC, RDP...): decode its
            # port as TLS after all (the plaintext before shows as continuation data)
            unseen = [c for c in conns if c.starttls and not _has_records(view, c)]
            if unseen:
                again = _verify_view(path, conns, set(force) | {port_of(c.server) for c in unseen},
                                     tshark, timeout)
                views.update({c.stream: again for c in unseen})
        except TsharkFailed as exc:
            return dataclasses.replace(inp, errors=inp.errors + (str(exc),)), None
    checks = []
    taken = set()
    for stream in sorted(connections):
        conn = connections[stream]
        view = views.get(stream, WiresharkView())
        theirs = view.match(stream, frozenset((conn.client, conn.server)), taken)
        taken.add(theirs)
        sides = tuple(_compare_side(conn.sides[role], view,
                                    (theirs, conn.sides[role].src, conn.sides[role].dst)
                                    if theirs is not None else None)
                      for role in ("client", "server"))
        checks.append(ConnectionCheck(path, stream, theirs, conn.client, conn.server, sides))
    return inp, checks


def _verify_view(path, connections, force, tshark, timeout):
    view = WiresharkView()
    display = (f"{ports_filter(tshark, connections)} and "
               "(tls or tcp.flags.fin == 1 or tcp.flags.reset == 1)")
    parameters = tshark_parameters(force, extra=["-j", VERIFY_SUBTREES])
    tshark_packets(path, tshark, parameters, display, view.packet, timeout_for(path, timeout))
    return view


def _has_records(view, conn):
    ends = frozenset((conn.client, conn.server))
    return any(records for (stream, src, dst), records in view.records.items()
               if frozenset((src, dst)) == ends)


def verify(paths, *, stream=None, idle_timeout=None, tshark=None, timeout=None, jobs=1):
    """Compare our records and closes with Wireshark's on every TLS connection.

    ``paths``: a path or a list (files, directories; not ``-``: the file is read
    twice). ``stream``: only this ``tcp.stream``. ``tshark``: the tshark to run
    (default: the one on PATH). ``timeout``: seconds tshark may take per file
    (default: from the file's size). ``jobs``: files verified at once (tshark
    runs beside our analysis of the next file). Returns a ``VerifyReport``; raises
    ``TsharkMissing`` before reading anything when tshark is not installed.
    """
    tshark = find_tshark(tshark)
    options = {"all_connections": False, "stream": stream, "idle_timeout": idle_timeout}

    def one(path):
        if path == "-":
            return InputReport(path="-", errors=(
                "-: verify reads each capture twice (ours and tshark's): give a file",)), []
        return _verify_file(path, options, tshark, timeout)

    paths = list(expand_inputs(paths))
    if jobs > 1 and len(paths) > 1:
        # the threads' tshark children are ended on a signal too: the main thread
        # takes it (killing them all, and any started after), and no file is begun
        from concurrent.futures import ThreadPoolExecutor, wait
        with ended_on_signals(), ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(one, path) for path in paths]
            try:
                # waits that wake: the kernel may hand the signal to a worker thread, and
                # the main thread runs its handler only once it wakes (it waited for
                # the running tshark to end: seconds)
                pending = futures
                while pending:
                    pending = wait(pending, timeout=SIGNAL_POLL)[1]
                results = [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()
    else:
        results = [one(path) for path in paths]
    return VerifyReport(inputs=tuple(inp for inp, _ in results),
                        connections=tuple(check for _, found in results for check in found or ()),
                        not_compared=tuple(inp.path for inp, found in results if found is None))


# -- rendering verify ----------------------------------------------------------------

def _frame_text(value):
    return "-" if value is None else str(value)


def _pair(ours, theirs):
    """``ours`` when the two agree, ``ours vs theirs`` when they do not."""
    return _frame_text(ours) if ours == theirs else f"{_frame_text(ours)} vs {_frame_text(theirs)}"


def _record_text(record):
    if record is None:
        return "none"
    frames = ",".join(map(str, record["frames"][:4])) + ("..." if len(record["frames"]) > 4 else "")
    return (f"{tls.CONTENT_TYPES.get(record['type'], record['type'])} {record['length']} B "
            f"at offset {record['offset']} (frame {frames})")


def difference_text(side):
    """One line: the first record where the two views differ, or ''."""
    d = side.difference
    if d is None:
        return ""
    return f"record #{d['index']}: ours {_record_text(d['ours'])}; Wireshark {_record_text(d['wireshark'])}"


def verify_rows(report):
    """One row per connection side: what was compared and the first difference."""
    for c in report.connections:
        for s in c.sides:
            yield {"file": c.file, "stream": c.stream,
                   "wireshark_stream": c.wireshark_stream, "side": s.side, "src": s.src,
                   "records": s.records, "wireshark_records": s.wireshark_records,
                   "fin": s.fin, "wireshark_fin": s.wireshark_fin, "rst": s.rst,
                   "wireshark_rst": s.wireshark_rst, "agree": s.agree,
                   "difference": difference_text(s)}


VERIFY_COLUMNS = (render.Column("side", "side"), render.Column("src", "src"),
                  render.Column("records", "records"), render.Column("fin", "first FIN"),
                  render.Column("rst", "first RST"),
                  render.Column("difference", "first difference (ours; Wireshark)", "words"))


def render_verify(report, fmt, out, width=0, differences=False):
    """Write the verify report: ``table`` (a table per connection), ``json``, ``jsonl`` or
    ``csv``; ``width`` for the tables (0: no limit); ``differences``: only the
    connections that differ (the summary still counts every one). Errors are the
    caller's to tell (they are in the report's inputs)."""
    summary = report.to_dict()["summary"]
    if differences:
        report = dataclasses.replace(report, connections=tuple(c for c in report.connections
                                                                if not c.agree))
    if fmt == "json":
        render.write_json(dict(report.to_dict(), summary=summary), out)
        return
    if fmt == "jsonl":
        whole = report.to_dict()
        render.write_jsonl(whole["connections"] + [{"inputs": whole["inputs"], "summary": summary}], out)
        return
    if fmt == "csv":
        rows = list(verify_rows(report))
        render.write_csv(rows, list(rows[0]) if rows else ["file"], out)
        return
    rows = []
    for c in report.connections:
        verdict = "agree" if c.agree else "DIFFER"
        numbering = "" if c.stream == c.wireshark_stream else (
            f"; Wireshark: tcp.stream {_frame_text(c.wireshark_stream)}"
            if c.wireshark_stream is not None else "; Wireshark shows none of its TLS, FIN or RST frames")
        if rows:
            rows.append("")
        rows.append(f"{c.file} stream {c.stream}: {c.client} -> {c.server}: {verdict}{numbering}")
        rows += [{"side": s.side, "src": s.src, "records": _pair(s.records, s.wireshark_records),
                  "fin": _pair(s.fin, s.wireshark_fin), "rst": _pair(s.rst, s.wireshark_rst),
                  "difference": difference_text(s)} for s in c.sides]
    if rows:
        render.write_table(rows, VERIFY_COLUMNS, out, width, indent=render.TABLE_INDENT)
        out.write("\n")
    said = (f"{summary['connections']} TLS connection(s): {summary['agree']} agree with Wireshark, "
            f"{summary['differ']} differ (a value 'A vs B' is ours vs Wireshark's)")
    out.write("\n".join(textwrap.wrap(said, width) if width else [said]) + "\n")
