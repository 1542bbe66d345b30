"""Decryption with a key log: what the records around each finding held.

For decryption tshark runs with the key log, without application-data
reassembly, the TLS heuristics for HTTP off and ``-d tls.port==P,data``: each
decrypted record's plaintext comes out whole as ``data.data``, in record order.
The first line of the plaintext, and for HTTP/1.x the message it belongs to
(status line or body, by the headers' Content-Length), are read here.

The key log is read once per run, whatever its size (a FIFO too), after our
own analysis has found the client randoms of the captures' TLS connections:
only their lines are kept, and tshark gets each capture's lines in a private
temporary file (removed at the end, and on SIGTERM, SIGHUP and SIGINT, which
end tshark first: ``tshark.ended_on_signals``).
"""

import dataclasses
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass

from ..api import analyze as analyze_captures
from ..api import expand_inputs
from ..report import render
from ..tls import wire as tls
from .dissect import BridgeRun, WiresharkView, decode_as, our_connection, port_of, ports_filter
from .tshark import (DECRYPT_PREFS, TLS_HEURISTICS, TsharkFailed, ended_on_signals, find_tshark, set_filter,
                     tshark_parameters, timeout_for, tshark_packets)

FIRST_LINE_MAX = 60

# -- decryption ---------------------------------------------------------------------

HTTP_START = re.compile(rb"^(?:HTTP/\d(?:\.\d)? (\d{3})[^\r\n]*|[A-Z][A-Z-]{1,15} \S+ HTTP/\d(?:\.\d)?)\r?\n")


def first_line(data, limit=FIRST_LINE_MAX):
    """The first line of ``data``, printable (others as ``.``), cut at ``limit`` characters."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in line[:limit + 1])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _http_message(head):
    """(start line, status or None, header length or None, body length or None) of an
    HTTP/1.x message starting at ``head``; None when it does not start one."""
    match = HTTP_START.match(head)
    if match is None:
        return None
    start = match.group(0).rstrip(b"\r\n").decode("latin-1")
    status = int(match.group(1)) if match.group(1) else None
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return start, status, None, None
    header_length = end + 4
    body = None
    for line in head[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            body = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            body = -1  # chunked: the body runs on past this point
    if body is None and (status is None or status < 200 or status in (204, 304)):
        body = 0    # a request without a length, or a response that has no body (RFC 9112 6.3)
    return start, status, header_length, body


def describe(record, plaintext, earlier=()):
    """What a record held, as evidence: ``readable`` (in the clear, or decrypted with
    the key log; else ``reason``), ``wireshark`` (Wireshark's description of it),
    ``content_type`` (the inner one of a TLS 1.3 record), ``first_line`` of its
    plaintext; for HTTP/1.x,
    ``http_message`` (the start line of the message it belongs to), ``http_status``
    and ``part``: ``whole`` (the whole message), ``headers`` (start line and
    headers, the body follows), ``start`` (start line and part of the headers),
    ``more_headers`` or ``body`` / ``body_part`` (all / part of the body).
    ``earlier``: the plaintexts the same side sent just before it, oldest first
    (to find the message a body belongs to)."""
    info = {"index": record.index, "offset": record.offset, "frame": record.last_frame,
            "readable": False}
    if plaintext is None:
        info["reason"] = ("it never completed (a partial record cannot be decrypted)"
                          if not record.complete else "Wireshark does not show it")
        return info
    info["wireshark"] = plaintext.summary
    if not plaintext.decrypted:
        info["reason"] = ("Wireshark could not decrypt it with this key log" if plaintext.decrypted is False
                          else f"Wireshark hands it to {plaintext.protocol}: its plaintext is not shown here")
        return info
    info["readable"] = True
    inner = plaintext.inner_type if plaintext.inner_type is not None else plaintext.type
    info["content_type"] = tls.CONTENT_TYPES.get(inner, str(inner))
    if inner != tls.APPLICATION_DATA or plaintext.plaintext is None:
        return info
    data = plaintext.plaintext
    info["length"] = len(data)
    info["first_line"] = first_line(data)
    # the message this record belongs to: one it starts, or one an earlier record began
    before = b""
    for chunk in [b""] + list(reversed(earlier)):
        before = chunk + before
        message = _http_message(before + data)
        if message is None:
            continue
        start, status, header_length, body = message
        done, total = len(before), len(before) + len(data)   # message bytes before / after it
        end = header_length + body if header_length is not None and body not in (None, -1) else None
        if end is not None and done >= end:
            break                   # that message ended before this record
        if header_length is None or done >= header_length:
            part = ("start" if not done else "more_headers") if header_length is None else \
                ("body" if done == header_length and end is not None and total >= end else "body_part")
        elif done:
            part = "more_headers"
        else:
            part = "whole" if end is not None and total >= end else "headers"
        info.update(protocol="http", http_message=start, part=part)
        if status is not None:
            info["http_status"] = status
        break
    return info


def phrase(info):
    """``info`` (from ``describe``) in words: 'the body of HTTP/1.1 401 Unauthorized'."""
    if not info.get("readable"):
        return None
    if "http_message" in info:
        message = info["http_message"]
        line = "status line" if "http_status" in info else "request line"
        return {"whole": f"{message} (the whole message)",
                "headers": f"{message} (its {line} and headers)",
                "start": f"the start of {message} (part of its headers)",
                "more_headers": f"part of the headers of {message}",
                "body": f"the body of {message}",
                "body_part": f"part of the body of {message}"}[info["part"]]
    if info.get("content_type") != "application_data":
        return f"a TLS {info.get('content_type')} record ({info.get('wireshark')})"
    if "first_line" in info:
        return f"data beginning {info['first_line']!r}"
    return f"application data Wireshark dissects as {info.get('protocol')}"


def _name(finding, key):
    """How a finding's message names the record under ``key``."""
    evidence = finding.evidence
    if key == "first_pending":
        if evidence.get("post_handshake_only"):
            return "the first pending record"
        many = evidence.get("records_pending", evidence.get("records_lost", 1)) > 1
        return "the first lost record" if many else "the lost record"
    if key == "partial":
        return {"truncated_record": "the cut record",
                "capture_ended_inside_record": "the unfinished record"}.get(
                    finding.code, "the record it closed inside")
    if finding.code == "truncated_record":
        return "the last whole record before it"
    return "the last record received"


def _wanted_records(conn, report):
    """(finding index, evidence key, side, Record) of the records each finding is about."""
    wanted = []
    for i, finding in enumerate(report.findings):
        evidence = finding.evidence
        actor = conn.client if finding.side == "client" else conn.server
        peer = conn.peer(actor)

        def records_of(side):
            kept = list(side.records)
            if side.tracker is not None and side.tracker.partial is not None:
                kept.append(side.tracker.partial)
            return kept

        def by_index(side, index):
            return next((r for r in records_of(side) if r.index == index), None)

        def last_before_reach(side):
            reach = actor.close.reach if actor.close is not None else None
            before = [r for r in records_of(side) if r.complete and reach is not None and r.end <= reach]
            return before[-1] if before else None

        picks = []
        code = finding.code
        if code == "close_before_pending_records":
            if evidence.get("last_received"):
                picks.append(("last_received", peer, by_index(peer, evidence["last_received"]["index"])))
            picks.append(("first_pending", peer, by_index(peer, evidence["first_pending"]["index"])))
        elif code == "close_inside_record":
            index = evidence["record_index"]
            picks.append(("last_received", peer, by_index(peer, index - 1)))
            picks.append(("partial", peer, by_index(peer, index)))
        elif code == "reset_on_data_after_close" and evidence.get("lost") == "application_data":
            picks.append(("last_received", peer, last_before_reach(peer)))
            first = next((r for r in records_of(peer) if r.first_frame == evidence["first_lost_frame"]), None)
            picks.append(("first_pending", peer, first))
        elif code == "close_before_peer_finished":
            picks.append(("last_received", peer, last_before_reach(peer)))
        elif code in ("truncated_record", "capture_ended_inside_record"):
            index = evidence["record_index"]
            picks.append(("last_received", actor, by_index(actor, index - 1)))
            picks.append(("partial", actor, by_index(actor, index)))
        for key, side, record in picks:
            if record is not None:
                wanted.append((i, key, side, record))
    return wanted


def _context(side, records, depth=8):
    """The side's application-data records up to ``depth`` before each wanted one."""
    kept = [r for r in side.records if r.type == tls.APPLICATION_DATA]
    out = {}
    for record in records:
        before = [r for r in kept if r.offset < record.offset][-depth:]
        out[record.offset] = before
    return out


# -- the key log: read once, only the lines of the captures' client randoms --------------

KEYLOG_LINE_MAX = 4096        # a key log line is under 250 bytes: longer ones are skipped


def client_randoms(conn):
    """The ClientHello randoms (hex, as key logs write them) of a connection's sides."""
    return {side.tracker.client_random.hex().encode() for side in (conn.a, conn.b)
            if side.tracker is not None and side.tracker.client_random is not None}


def read_keylog(path, randoms):
    """The lines of the key log at ``path`` (SSLKEYLOGFILE format) for these client
    randoms: {random: [line, ...]}, and under None the ``RSA`` lines (keyed by
    something else). Read once, line by line: any size, a FIFO too. ``OSError``
    when it cannot be read."""
    kept = defaultdict(list)
    with open(path, "rb") as f:
        while True:
            line = f.readline(KEYLOG_LINE_MAX)
            if not line:
                break
            if not line.endswith(b"\n") and len(line) == KEYLOG_LINE_MAX:
                while line and not line.endswith(b"\n"):    # not a key log line: skipped
                    line = f.readline(KEYLOG_LINE_MAX)
                continue
            fields = line.split()
            if len(fields) != 3:
                continue                                     # a comment, a blank line
            key = fields[1].lower()
            if key in randoms:
                kept[key].append(b" ".join(fields) + b"\n")
            elif fields[0] == b"RSA":
                kept[None].append(b" ".join(fields) + b"\n")
    return kept


def write_keys(directory, name, kept, randoms):
    """A private key log holding the lines of ``randoms`` (and the RSA lines): its path."""
    path = os.path.join(directory, f"{name}.keys")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        for key in sorted(randoms):
            f.writelines(kept.get(key, ()))
        f.writelines(kept.get(None, ()))
    return path


def readable_again(path):
    """Whether tshark can read ``path`` after us: a regular file (not standard input,
    a pipe or a FIFO, which give their bytes once)."""
    return path != "-" and os.path.isfile(path)


def _once_only(path):
    what = "standard input" if path == "-" else f"{path} (not a regular file)"
    return TsharkFailed(f"{what} cannot be read a second time by tshark")


def _keylog_unreadable(keylog, exc):
    return TsharkFailed(f"cannot read the key log {keylog}: {exc.strerror or exc}")


def _decrypt(path, keylog, connections, frames, tshark, timeout, display=None):
    """tshark's records of ``frames`` (or of ``display``), decrypted with ``keylog``:
    {(stream, src, dst): {offset: WiresharkRecord}}."""
    view = WiresharkView()
    prefs = DECRYPT_PREFS + (f"tls.keylog_file:{os.path.abspath(keylog)}",)
    extra = []
    for heuristic in TLS_HEURISTICS:
        extra += ["--disable-heuristic", heuristic]
    for port in sorted({port_of(c.server) for c in connections}):
        extra += ["-d", f"tls.port=={port},data"]
    parameters = tshark_parameters(decode_as(connections), prefs, extra)
    if display is None:
        display = f"frame.number in {set_filter(tshark, frames)}"
    tshark_packets(path, tshark, parameters, display, view.packet, timeout_for(path, timeout))
    return view


def _lookup(view, conn_stream, src, dst, offset):
    record = view.records.get((conn_stream, src, dst), {}).get(offset)
    if record is not None:
        return record
    found = [side[offset] for (stream, s, d), side in view.records.items()
             if s == src and d == dst and offset in side]
    return found[0] if len(found) == 1 else None


def _with_plaintext(conn, view):
    """``conn.report`` with its findings' evidence and messages telling what the records held."""
    texts = defaultdict(dict)   # finding index -> {key: info}
    for i, key, side, record in conn.wanted:
        src, dst = side.endpoint, conn_peer_endpoint(conn, side.endpoint)
        plaintext = _lookup(view, conn.stream, src, dst, record.offset) if record.complete else None
        earlier = []
        for r in conn.context.get((side.endpoint, record.offset), ()):
            text = _lookup(view, conn.stream, src, dst, r.offset)
            if text is not None and text.plaintext is not None:
                earlier.append(text.plaintext)
        texts[i][key] = describe(record, plaintext, earlier)
    findings = list(conn.report.findings)
    for i, infos in texts.items():
        finding = findings[i]
        words = []
        for key in ("first_pending", "partial", "last_received"):
            if key in infos:
                said = phrase(infos[key])
                name = _name(finding, key)
                if said is not None:
                    words.append(f"{name} was {said}")
                elif key != "last_received":
                    words.append(f"{name} could not be read: {infos[key]['reason']}")
        evidence = dict(finding.evidence, app_data=infos)
        message = finding.message + ("; " + "; ".join(words) if words else "")
        findings[i] = dataclasses.replace(finding, evidence=evidence, message=message)
    return dataclasses.replace(conn.report, findings=tuple(findings))


def conn_peer_endpoint(conn, src):
    return conn.server if src == conn.client else conn.client


def analyze(paths, *, keylog, tshark=None, timeout=None, on_connection=None, **options):
    """``pcap_tls_split.analyze`` with the plaintext of the records around each finding.

    Each finding about records (a close before pending records, inside a record,
    data lost to a RST, a truncated record) gains ``evidence["app_data"]``: for
    ``last_received``, ``first_pending`` and ``partial`` (the ones that apply), what
    Wireshark decrypted with the key log (``describe``), and its message says it
    in words. ``options`` are ``pcap_tls_split.analyze``'s. ``on_connection`` is
    called with each listed connection once all are done. Raises ``TsharkMissing``
    before reading anything when tshark is not installed; a file tshark cannot
    decrypt keeps its findings as they are, with the reason in its ``inputs[].errors``.
    """
    tshark = find_tshark(tshark)
    report = analyze_captures(paths, **options)
    flagged = defaultdict(dict)          # file -> {stream: ConnectionReport with findings}
    for conn in report.connections:
        if conn.findings:
            flagged[conn.file][conn.stream] = conn
    decorated, notes = {}, defaultdict(list)
    with ended_on_signals(), tempfile.TemporaryDirectory(prefix="pcap-tls-split-keys-") as keydir:
        # our analysis again: the records the findings are about, the client randoms
        wanted = []
        for path, reports in flagged.items():
            if readable_again(path):
                wanted.append((path, *_flagged_connections(path, reports, options.get("idle_timeout"))))
            else:
                notes[path].append(f"plaintext not added: {_once_only(path)}")
        try:
            kept = read_keylog(keylog, set().union(*(w[2] for w in wanted))) if wanted else {}
        except OSError as exc:
            for path, _, _ in wanted:
                notes[path].append(f"plaintext not added: {_keylog_unreadable(keylog, exc)}")
            wanted = []
        for number, (path, connections, randoms) in enumerate(wanted):
            try:
                keys = write_keys(keydir, number, kept, randoms)
                decorated.update({(path, c.stream): c for c in _decorate(
                    path, connections, keys, tshark, timeout)})
            except TsharkFailed as exc:
                notes[path].append(f"plaintext not added: {exc}")
    connections = tuple(decorated.get((c.file, c.stream), c) for c in report.connections)
    inputs = tuple(dataclasses.replace(i, errors=i.errors + tuple(notes[i.path])) if notes.get(i.path) else i
                   for i in report.inputs)
    for conn in connections if on_connection is not None else ():
        on_connection(conn)
    return dataclasses.replace(report, inputs=inputs, connections=connections)


def _flagged_connections(path, reports, idle_timeout):
    """Our analysis of ``path`` again, to reach the records its flagged connections'
    findings are about: (those connections, the client randoms of all its TLS ones)."""
    connections, randoms = [], set()

    def on_tls(conn):
        randoms.update(client_randoms(conn))
        report = reports.get(conn.stream)
        if report is None:
            return
        ours = our_connection(conn, report)
        ours.wanted = _wanted_records(conn, report)
        sides = defaultdict(list)
        for _, _, side, record in ours.wanted:
            sides[side].append(record)
        for side, records in sides.items():
            for offset, before in _context(side, records).items():
                ours.context[(side.endpoint, offset)] = before
        connections.append(ours)

    BridgeRun(path, {"idle_timeout": idle_timeout}, on_tls=on_tls).run()
    return connections, randoms


def _decorate(path, connections, keylog, tshark, timeout):
    """The reports of ``path``'s flagged ``connections`` with plaintext: tshark
    decrypts the records their findings are about with ``keylog``."""
    frames = set()
    for conn in connections:
        for _, _, _, record in conn.wanted:
            frames.update(record.frames)
        for before in conn.context.values():
            for record in before:
                frames.update(record.frames)
    if not frames:
        return []
    view = _decrypt(path, keylog, connections, frames, tshark, timeout)
    return [_with_plaintext(conn, view) for conn in connections]


@dataclass(frozen=True, slots=True)
class RecordText:
    """What one record held, as Wireshark decrypted it."""

    row: object
    """The ``report.RecordRow``."""
    plaintext: str = None
    """One printable line: the first line of decrypted application data, or
    ``[Wireshark's description]`` of a record that is not application data, or
    ``?`` when it could not be decrypted."""
    info: dict = None
    """``describe``'s evidence for it."""


def records(paths, *, keylog, stream=None, idle_timeout=None, tshark=None, timeout=None):
    """``pcap_tls_split.records`` with the plaintext of each record: ``(texts, inputs)``,
    a list of ``RecordText`` in the order found and the ``InputReport`` of each
    input. Raises ``TsharkMissing`` up front; the records of a file tshark cannot
    decrypt get no plaintext, and the reason is in its input's ``errors``."""
    tshark = find_tshark(tshark)
    options = {"all_connections": False, "stream": stream, "idle_timeout": idle_timeout}
    texts, inputs = [], []
    read = []
    for path in expand_inputs(paths):
        rows, connections, randoms = [], {}, set()

        def on_tls(conn, connections=connections, randoms=randoms):
            randoms.update(client_randoms(conn))
            connections.setdefault(conn.stream, our_connection(conn))

        inp = BridgeRun(path, options, on_record=rows.append, on_tls=on_tls).run()
        read.append((path, inp, rows, connections, randoms))
    with ended_on_signals(), tempfile.TemporaryDirectory(prefix="pcap-tls-split-keys-") as keydir:
        wanted = [entry for entry in read if entry[2] and entry[3] and readable_again(entry[0])]
        try:
            kept = read_keylog(keylog, set().union(*(w[4] for w in wanted))) if wanted else {}
            unreadable = None
        except OSError as exc:
            unreadable = exc
        for number, (path, inp, rows, connections, randoms) in enumerate(read):
            view = None
            if rows and connections:
                try:
                    if not readable_again(path):
                        raise _once_only(path)
                    if unreadable is not None:
                        raise _keylog_unreadable(keylog, unreadable)
                    conns = list(connections.values())
                    keys = write_keys(keydir, number, kept, randoms)
                    view = _decrypt(path, keys, conns, None, tshark, timeout,
                                    display=f"{ports_filter(tshark, conns)} and tls")
                except TsharkFailed as exc:
                    inp = dataclasses.replace(inp, errors=inp.errors + (f"plaintext not added: {exc}",))
            inputs.append(inp)
            texts += _texts(rows, connections, view)
    return texts, inputs


def _texts(rows, connections, view):
    """The ``RecordText`` of each row (with the plaintext from tshark's ``view``)."""
    texts = []
    earlier = defaultdict(list)
    for row in rows:
        conn = connections.get(row.stream)
        if view is None or conn is None:
            texts.append(RecordText(row))
            continue
        dst = conn_peer_endpoint(conn, row.src)
        found = _lookup(view, row.stream, row.src, dst, row.offset) if row.complete else None
        info = describe(row, found, earlier[(row.stream, row.src)][-8:])
        if found is not None and found.plaintext is not None:
            earlier[(row.stream, row.src)].append(found.plaintext)
        texts.append(RecordText(row, _one_line(info, found), info))
    return texts


def _one_line(info, found):
    if found is None:
        return "?" if info.get("reason", "").startswith("Wireshark") else ""
    if not info["readable"]:
        return "?" if found.type == tls.APPLICATION_DATA else f"[{found.summary}]"
    if "first_line" in info:
        if info.get("part") == "body":
            return f"{info['first_line']}  (body of {info['http_message']})"
        return info["first_line"]
    return f"[{found.summary}]"


def render_records(texts, fmt, out, width=0):
    """``report.render.render_records`` with a ``plaintext`` column (key in JSON)."""
    if fmt == "table":
        render.write_records_table([t.row for t in texts], out, width,
                                   plaintexts=[t.plaintext for t in texts])
    elif fmt == "csv":
        render.write_csv((dict(render.record_dict(t.row), plaintext=t.plaintext or "") for t in texts),
                         render.RECORD_CSV_COLUMNS + ("plaintext",), out)
    else:
        dicts = (dict(render.record_dict(t.row), plaintext=t.plaintext, app_data=t.info) for t in texts)
        (render.write_jsonl if fmt == "jsonl" else render.write_json_list)(dicts, out)
