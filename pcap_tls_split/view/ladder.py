"""One connection as a text ladder diagram: client on the left, server on the right,
time going down.

One line per packet that matters (SYN, data, FIN, RST), each TLS record against
the segments that carried it (a segment that carried several gets a line per
record below its own), pure ACKs folded into a count, the pauses between
packets, the first close with its reach, the peer's records beyond the reach
marked ``pending`` (``LOST`` when the closer then reset), and the connection's
findings below. Long runs of bulk data segments are folded. ``ladder`` returns
the lines; colour is ANSI escapes, only when asked.
"""

import textwrap

from ..frame import FIN, RST
from . import detail as d
from . import select, words

MIN_WIDTH = 60

UNICODE = {"line": "│", "dash": "─", "right": "▶", "left": "◀", "pause": "┆", "fold": "⋮",
           "cross": "✗", "dot": "·"}
ASCII = {"line": "|", "dash": "-", "right": ">", "left": "<", "pause": ":", "fold": ":",
         "cross": "x", "dot": "-"}

STYLES = {"handshake": "36", "data": "", "split": "33", "pending": "1;31", "lost": "1;31",
          "close": "1;33", "reset": "31", "dim": "2", "alert": "35", "title": "1",
          "high": "1;31", "medium": "33", "low": "36", "info": "2"}


class Paint:
    """ANSI colour when asked, plain text otherwise."""

    def __init__(self, color):
        self.color = color

    def __call__(self, text, style):
        code = STYLES.get(style or "", "")
        if not self.color or not code or not text:
            return text
        return f"\033[{code}m{text}\033[0m"


def ladder(detail, width=100, color=False, chars=UNICODE):
    """The ladder of one connection (a ``detail.Detail``): a list of lines, each at
    most ``width`` characters (escapes aside)."""
    width = max(MIN_WIDTH, width)
    paint = Paint(color)
    inner = 20 if width >= 90 else 14
    report = detail.report
    start = detail.start
    kept = [p for p in detail.packets if isinstance(p, d.Packet)]
    in_ms = not kept or kept[-1].time - start < 10
    unit = "ms" if in_ms else "s"
    lines = []

    def stamp(t):
        rel = t - start
        return f"{rel * 1000:.3f}" if in_ms else f"{rel:.6f}"

    # the time and frame columns as wide as what they hold
    time_width = max([len("time " + unit)] + [len(stamp(p.time)) for p in kept[-1:]])
    frame_width = max([len("frame")] + [len(str(p.frame)) for p in kept])
    note_width = width - (time_width + 1 + frame_width + 2 + inner + 2 + 2)

    def lifeline(middle=None, style=None):
        body = middle if middle is not None else " " * inner
        return f"{chars['line']}{paint(body, style)}{chars['line']}"

    def emit(time_text, frame_text, middle, notes):
        """One packet line (notes: [(text, style)]), the notes wrapped below it."""
        left = f"{time_text:>{time_width}} {frame_text:>{frame_width}}  "
        blank = " " * len(left)
        first = True
        for text, style in notes or [("", None)]:
            text = text.replace("·", chars["dot"])
            for chunk in textwrap.wrap(text, note_width, subsequent_indent="  ") or [""]:
                chunk = chunk.replace("\xa0", " ")
                lines.append((left if first else blank) + (middle if first else lifeline())
                             + ("  " + paint(chunk, style) if chunk else ""))
                first = False

    def between(text, note=None, style="dim"):
        """A line between packets: a pause, folded ACKs, folded segments (``note``
        beside it, wrapped)."""
        if len(text) + 2 > inner:      # too wide for between the lifelines: beside them
            text, note = "", text + (", " + note if note else "")
        body = f" {text} ".center(inner) if text else " " * inner
        left = " " * (time_width + 1 + frame_width + 2)
        chunks = textwrap.wrap(note, note_width, subsequent_indent="  ") if note else [""]
        lines.append(left + chars["pause"] + paint(body, style) + chars["pause"]
                     + ("  " + paint(chunks[0], style) if chunks[0] else ""))
        for chunk in chunks[1:]:
            lines.append(left + chars["pause"] + " " * inner + chars["pause"] + "  " + paint(chunk, style))

    def arrow(packet, style):
        label = words.flag_words(packet.flags)
        if packet.length:
            label = (label + " " if label else "") + f"{packet.length} B"
        label = f" {label} " if label else ""
        label = label[:inner - 3]
        fill = chars["dash"] * (inner - 2 - len(label))
        if packet.from_client != packet.icmp:     # (an ICMP error goes back to the quoted sender)
            body = chars["dash"] + label + fill + chars["right"]
        else:
            body = chars["left"] + fill + label + chars["dash"]
        return lifeline(body, style)

    # -- the header
    title = f"{detail.file}  tcp.stream {detail.stream}  TLS {report.tls_version or '?'}"
    if detail.sni:
        title += f"  SNI {detail.sni}"
    lines += [paint(chunk, "title") for chunk in textwrap.wrap(title, width, break_on_hyphens=False)]
    lines += textwrap.wrap(f"client {report.client}  {chars['right']}  server {report.server}", width)
    lines.append(f"{'time ' + unit:>{time_width}} {'frame':>{frame_width}}  client"
                 + "server".rjust(inner + 2 - len("client")))

    pieces = detail.pieces()
    beyond = detail.records_beyond_reach()
    closer_rst = words.closer_rst_frame(detail)
    seen_end = {True: 0, False: 0}     # the furthest stream byte each side had sent (None: unknown)

    def notes_of(packet):
        """[(text, style)] of one packet, and the arrow's style."""
        if packet.icmp:
            return [(words.icmp_words(packet), "alert")], "alert"
        role = "client" if packet.from_client else "server"
        notes, arrow_style = [], None
        carried = pieces.get(packet.frame, [])
        if carried:
            for piece in carried:
                key = (role, piece.record.index)
                kind = detail.kind.get(key, d.OTHER)
                text, split_header = words.piece_words(piece, role, kind)
                style = {d.HANDSHAKE: "handshake", d.CCS: "handshake", d.ENCRYPTED_HANDSHAKE: "handshake",
                         d.ALERT: "alert", d.POST_HANDSHAKE: "handshake"}.get(kind, "data")
                if piece.parts > 1 or split_header or not piece.record.complete:
                    style = "split"
                if key in beyond and piece.end > report.close.reach:
                    mark = words.pending_words(detail, packet, role, closer_rst)
                    if mark is not None and kind != d.ALERT:
                        text += f"  {chars['cross']}\xa0{mark[0]}: {mark[1]}"   # (kept on one line)
                        style = arrow_style = "lost" if mark[0] == "LOST" else "pending"
                    elif mark is not None:
                        text += f"  ({mark[1]})"
                notes.append((text, style))
        elif packet.length:
            start = detail.tls_start.get(role)
            known = seen_end[packet.from_client]
            if packet.offset is not None and known is not None and packet.offset + packet.length <= known:
                notes.append(("retransmission", "dim"))
            elif start is None or packet.offset is not None and packet.offset < start:
                notes.append(("bytes before TLS", "dim"))
            else:
                notes.append(("bytes of records not kept", "dim"))
        if packet.length and packet.offset is not None:
            known = seen_end[packet.from_client]
            if known is not None and packet.offset > known:
                notes.append((f"after a hole of {packet.offset - known} B in the {role}'s stream (out "
                              "of order, or not captured)", "split"))
            seen_end[packet.from_client] = max(known or 0, packet.offset + packet.length)
        if packet.flags & (FIN | RST):
            first = packet.frame == report.close.frame
            style = "reset" if packet.flags & RST else "close"
            notes.append((words.close_words(detail, packet), style))
            arrow_style = arrow_style or style
            if first:
                arrow_style = "close" if not packet.flags & RST else "reset"
        return notes, arrow_style

    folded = detail.drawn(pieces, beyond)
    acks = {True: 0, False: 0}
    position = [0]
    packets = detail.packets

    def advance(stop):
        """Move on to ``stop`` (None: the end), counting the pure ACKs passed."""
        i = position[0]
        while i < len(packets) and packets[i] is not stop:
            p = packets[i]
            if isinstance(p, d.Packet) and p.pure_ack:
                acks[p.from_client] += 1
            i += 1
        position[0] = i + 1

    last_time = None
    for item in folded:
        first = _first(item)
        advance(first)
        t = first.first_time if isinstance(first, d.Omitted) else first.time
        parts = []
        if last_time is not None and t - last_time >= words.PAUSE:
            parts.append(words.seconds(t - last_time))
        if acks[True] or acks[False]:
            parts.append(_acks_text(acks, chars))
        if parts:
            between(", ".join(parts))
        acks[True] = acks[False] = 0
        if isinstance(item, d.Omitted):
            records = sum(detail.omitted_records.values())
            between(f"{chars['fold']} {item.packets} packets",
                    f"not kept: frames {item.first_frame}-{item.last_frame}, client "
                    f"{item.client_bytes} B, server {item.server_bytes} B, "
                    f"{words.seconds(item.last_time - item.first_time)}"
                    + (f", {records} records" if records else ""))
            last_time = item.last_time
            seen_end[True] = seen_end[False] = None     # (what the packets not kept sent is not known)
            continue
        if isinstance(item, list):
            run = item
            size = sum(p.length for p in run)
            role = "client" if run[0].from_client else "server"
            indexes = sorted({piece.record.index for p in run for piece in pieces.get(p.frame, [])})
            between(f"{chars['fold']} {len(run)} segments",
                    f"{len(run)} more {role} segments, {size} B, records {words.tag(role, indexes[0])}-"
                    f"{indexes[-1]} (app data), {words.seconds(run[-1].time - run[0].time)}")
            for p in run:
                if p.offset is not None:
                    seen_end[p.from_client] = max(seen_end[p.from_client] or 0, p.offset + p.length)
            advance(run[-1])
            last_time = run[-1].time
            continue
        notes, style = notes_of(item)
        emit(stamp(item.time), str(item.frame), arrow(item, style), notes)
        last_time = item.time
    advance(None)
    if acks[True] or acks[False]:
        between(_acks_text(acks, chars))
    if detail.late:
        lines.append(paint(f"{detail.late} more packet(s) came after the connection had ended", "dim"))

    # -- the findings
    if report.findings:
        lines.append("")
        for f in report.findings:
            head = f"{f.severity} {f.code} ({f.side}, frame {f.frame}, confidence {f.confidence})"
            lines += [paint(chunk, str(f.severity)) for chunk in
                      textwrap.wrap(head, width, subsequent_indent="  ")]
            lines += textwrap.wrap(f.message, width, initial_indent="  ", subsequent_indent="  ")
    else:
        lines.append("")
        lines.append("no finding")
    return lines


def _first(item):
    return item[0] if isinstance(item, list) else item


def _acks_text(acks, chars):
    client, server = acks[True], acks[False]
    if client and server:
        return f"{chars['left']} {server} ACK{'s' * (server > 1)} {chars['dot']} {client} ACK{'s' * (client > 1)} {chars['right']}"
    if client:
        return f"{client} ACK{'s' * (client > 1)} {chars['right']}"
    return f"{chars['left']} {server} ACK{'s' * (server > 1)}"


def ladders(choice, width=100, color=False, chars=UNICODE, idle_timeout=None):
    """The ladders of the connections of a ``select.Choice``: a ``select.Drawn`` whose
    details are the ladders' lines, in file and stream order (each drawn as its
    connection ends: the details are not all held at once)."""
    drawn = select.details(choice, idle_timeout,
                           draw=lambda det: (det.file, det.stream, ladder(det, width, color, chars)))
    order = {path: i for i, path in enumerate(choice.files)}
    ordered = sorted(drawn.details, key=lambda made: (order.get(made[0], 0), made[1]))
    return drawn._replace(details=[lines for _, _, lines in ordered])


def legend(width=100):
    """What the marks mean, wrapped to ``width``."""
    return textwrap.wrap(words.legend(), max(MIN_WIDTH, width))
