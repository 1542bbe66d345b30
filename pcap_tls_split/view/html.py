"""The HTML report: one self-contained file to open in a browser or attach to a ticket.

The summary, the table of findings, and for every listed connection its SVG
picture (``svg.picture``) with its findings beside it, numbered as in the
picture. No script, no external stylesheet, font or image: everything is in
the one file, and it opens without a network.
"""

from html import escape

from .._version import __version__
from . import svg, words
from .select import MAX_DETAILS, choice_of, details

CSS = """
body{font-family:DejaVu Sans,Verdana,Arial,sans-serif;margin:16px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}h3{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;margin:6px 0 14px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f1f1}td.n{text-align:right}
.sev{font-weight:bold;border-radius:3px;padding:0 5px;color:#fff;white-space:nowrap}
.sev-high{background:#c0282b}.sev-medium{background:#e08a00}.sev-low{background:#4e79a7}
.sev-info{background:#8a8a8a}
.conn{border-top:2px solid #ddd;margin-top:26px;padding-top:6px}
.row{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
svg.ladder{flex:none;max-width:none}
.side{flex:1;min-width:280px;max-width:520px;font-size:13px}
.side ol{padding-left:22px;margin:4px 0 10px}.side li{margin-bottom:8px}
.facts td{border:none;padding:1px 8px 1px 0}
.note{color:#666;font-size:13px}.err{color:#c0282b}
code{font-size:12px;background:#f4f4f4;padding:0 3px}
.key span{display:inline-block;width:12px;height:12px;margin:0 4px -2px 12px}
"""


def _sev(severity):
    word = str(severity)
    return f'<span class="sev sev-{escape(word)}">{escape(word)}</span>'


def _anchor(index):
    return f"conn-{index}"


def write(report, out, idle_timeout=None, limit=MAX_DETAILS):
    """Write the HTML report of ``report`` to ``out``. Each capture that holds a listed
    connection is read again for their pictures (at most ``limit`` in all), one capture
    at a time, and its connections are written before the next is read."""
    def put(parts):
        out.write("\n".join(parts) + "\n")

    put(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width">',
         f"<title>pcap-tls-split report: {escape(_inputs_title(report))}</title>",
         f"<style>{CSS}</style></head><body>",
         f'<h1>pcap-tls-split report</h1><p class="note">pcap-tls-split {escape(__version__)}; '
         f"{len(report.inputs)} capture(s); times in the pictures are relative to each connection's "
         "first packet</p>"])
    put(_inputs(report) + _summary(report) + _findings_table(report))
    put(['<h2 id="connections">Connections</h2>',
         _key() if report.connections else '<p class="note">No connection listed.</p>'])
    choice = choice_of(report)
    notes, drawn_count, left_out = [], 0, 0
    if "-" in choice.files:
        notes.append("standard input cannot be read again: its connections have no picture")
    done = 0                                # connections of report.connections written
    connections = list(report.connections)
    index = {}                              # (file, stream) -> their places in the report
    for i, conn in enumerate(connections):
        index.setdefault((conn.file, conn.stream), []).append(i)
    for path, streams in choice.files.items():
        pictures = {}                       # place in the report -> its SVG

        def draw(det, path=path, pictures=pictures):
            places = index.get((path, det.stream), [])
            place = next((i for i in places if i not in pictures), None)
            if place is not None:
                pictures[place] = svg.picture(det, f"picture-{place}")
            return place

        if path != "-":
            drawn = details(choice._replace(files={path: streams}), idle_timeout, limit - drawn_count,
                            draw=draw)
            notes += drawn.errors
            drawn_count += len(drawn.details)
            left_out += drawn.left_out
        while done < len(connections) and connections[done].file == path:
            put([_connection(done, connections[done], pictures.pop(done, None))])
            done += 1
    for i in range(done, len(connections)):  # (none: the report lists them file by file)
        put([_connection(i, connections[i], None)])
    if left_out:
        notes.append(f"{left_out} more connection(s) listed but not drawn (at most {limit} pictures "
                     "in one report): give --stream N")
    put([f'<p class="note err">{escape(note)}</p>' for note in notes])
    put(['<h2>What the marks mean</h2><p class="note">' + escape(words.legend()) + "</p>",
         "</body></html>"])


def _inputs_title(report):
    paths = [i.path for i in report.inputs]
    return paths[0] if len(paths) == 1 else f"{len(paths)} captures"


def _inputs(report):
    rows = ["<h2>Captures</h2><table><tr><th>file</th><th>format</th><th>packets</th>"
            "<th>TCP connections</th><th>TLS connections</th><th>problems</th></tr>"]
    for inp in report.inputs:
        errors = "<br>".join(escape(e) for e in inp.errors)
        rows.append(f"<tr><td>{escape(inp.path)}</td><td>{escape(inp.format or 'unreadable')}</td>"
                    f'<td class="n">{inp.packets}</td><td class="n">{inp.tcp_connections}</td>'
                    f'<td class="n">{inp.tls_connections}</td><td class="err">{errors}</td></tr>')
    rows.append("</table>")
    return rows


def _summary(report):
    s = report.summary
    out = ['<h2 id="summary">Summary</h2>',
           f"<p>{s.connections} TCP connection(s), {s.tls_connections} TLS, {s.flagged} flagged</p>"]
    if s.by_code:
        out.append("<table><tr><th>code</th><th>connections</th></tr>")
        for code, count in sorted(s.by_code.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f'<tr><td><code>{escape(code)}</code></td><td class="n">{count}</td></tr>')
        out.append("</table>")
    corr = s.correlation
    if corr.connections:
        out.append("<table><tr><th>closes</th><th>connections</th><th>after a segment on a record "
                   "boundary</th><th>last record straddled segments</th></tr>")
        for name, row in (("premature", corr.premature), ("other", corr.not_premature)):
            if row.get("total"):
                out.append(f'<tr><td>{name}</td><td class="n">{row["total"]}</td>'
                           f'<td class="n">{row["aligned"]}</td>'
                           f'<td class="n">{row["last_record_straddled"]}</td></tr>')
        out.append("</table>")
        p = corr.premature
        if p.get("total"):
            aligned = f"all {p['total']}" if p["aligned"] == p["total"] else f"{p['aligned']} of {p['total']}"
            out.append(f"<p>{p['total']} of {corr.connections} closed prematurely; {aligned} closed right "
                       "after a segment that ended on a record boundary.</p>")
    return out


def _findings_table(report):
    rows = [(i, conn, f) for i, conn in enumerate(report.connections) for f in conn.findings]
    if not rows:
        return ['<h2 id="findings">Findings</h2><p class="note">No finding.</p>']
    out = ['<h2 id="findings">Findings</h2><table><tr><th>file</th><th>stream</th><th>client</th>'
           "<th>server</th><th>code</th><th>severity</th><th>confidence</th><th>side</th><th>frame</th>"
           "<th>message</th></tr>"]
    for i, conn, f in rows:
        out.append(f"<tr><td>{escape(conn.file)}</td>"
                   f'<td class="n"><a href="#{_anchor(i)}">{conn.stream}</a></td>'
                   f"<td>{escape(conn.client)}</td><td>{escape(conn.server)}</td>"
                   f"<td><code>{escape(f.code)}</code></td><td>{_sev(f.severity)}</td>"
                   f"<td>{escape(f.confidence)}</td><td>{escape(f.side)}</td>"
                   f'<td class="n">{f.frame}</td><td>{escape(f.message)}</td></tr>')
    out.append("</table>")
    return out


def _key():
    swatches = [("handshake", svg.COLOURS["handshake"]), ("encrypted handshake", svg.COLOURS["encrypted_handshake"]),
                ("application data", svg.COLOURS["application_data"]), ("alert", svg.COLOURS["alert"]),
                ("pending or lost", svg.PENDING), ("close and reach", svg.CLOSE), ("RST", svg.RESET)]
    return ('<p class="note key">Colours:' + "".join(f'<span style="background:{c}"></span>{escape(n)}'
                                                     for n, c in swatches) + "</p>")


def _connection(i, conn, picture):
    worst = max((f.severity for f in conn.findings), default=None)
    title = (f"{escape(conn.file)} · tcp.stream {conn.stream} · {escape(conn.client)} → "
             f"{escape(conn.server)} · TLS {escape(conn.tls_version or '?')}")
    out = [f'<section class="conn" id="{_anchor(i)}" data-file="{escape(conn.file)}" '
           f'data-stream="{conn.stream}">', f"<h3>{title} {_sev(worst) if worst else ''}</h3>",
           '<div class="row">']
    if picture is not None:
        out.append(picture)
    else:
        out.append('<p class="note">No picture: the capture could not be read again (standard '
                   "input), or the report has as many pictures as it may hold (see the end).</p>")
    out.append('<div class="side">')
    if conn.findings:
        out.append("<ol>")
        for f in conn.findings:
            out.append(f"<li>{_sev(f.severity)} <code>{escape(f.code)}</code> {escape(f.side)}, frame "
                       f"{f.frame}, confidence {escape(f.confidence)}<br>{escape(f.message)}</li>")
        out.append("</ol>")
    else:
        out.append('<p class="note">No finding.</p>')
    close = conn.close
    facts = []
    if close.first_closer:
        facts.append(("first close", f"{close.first_closer} {str(close.kind).upper()}, frame {close.frame}, "
                                     f"reach {close.reach}" + (" (estimated)" if close.reach_estimated else "")))
    for role in ("client", "server"):
        stats = conn.records[role]
        facts.append((f"{role} records", f"{stats.total}, straddling {stats.straddling}, header split "
                                         f"{stats.header_split}, coalesced {stats.coalesced}"))
    q = conn.quality
    problems = [f"{name.replace('_', ' ')} {getattr(q, name)}" for name in
                ("gaps", "retransmissions", "out_of_order", "conflicts", "snap_cut", "resyncs")
                if getattr(q, name)]
    if q.midstream:
        problems.append("capture started mid-stream")
    facts.append(("capture", ", ".join(problems) if problems else "complete"))
    facts.append(("Wireshark", f"tcp.stream eq {conn.stream}"))
    out.append('<table class="facts">' + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                                                 for k, v in facts) + "</table>")
    out.append("</div></div></section>")
    return "\n".join(out)

