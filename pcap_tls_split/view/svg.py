"""One connection as an SVG time-sequence picture: time down, client left, server right.

Each packet that matters is an arrow from its sender to its receiver; the TLS
records it carried are blocks on the sender's side, one per record part, and a
record that came in several segments is one bar along all of them. The first
close is drawn thick, with a mark at its reach on the peer's records; the
peer's records beyond the reach are red (pending, or lost when the closer then
reset). Time runs down in order of packets; pauses take more room the longer
they are (logarithmically) and say how long they were. Pure ACKs are counted
between packets, not drawn. The findings are numbered where they happened.
The SVG is plain markup: no script, no external font or file.
"""

import math
from html import escape

from ..frame import FIN, RST
from . import detail as d
from . import words

WIDTH = 900
TIME_X = 54             # right edge of the times
FRAME_X = 60            # left edge of the frame numbers
CLIENT_X, SERVER_X = 330, 590       # the lifelines
BAR = 12                # width of a record block
PIECE = 16              # height of a row per record part carried
ROW = 20                # least height of a packet's row
TOP = 52                # room for the two ends' names
MAX_PIECES = 6          # record parts drawn on one packet's row (the others are counted)
CLIENT_LABEL = 34       # characters of a client record's label (left of it: the times)

COLOURS = {d.HANDSHAKE: "#4e79a7", d.CCS: "#9aa5b1", d.ENCRYPTED_HANDSHAKE: "#7fa7d4",
           d.POST_HANDSHAKE: "#76b7b2", d.APPLICATION_DATA: "#59a14f", d.ALERT: "#b07aa1",
           d.OTHER: "#bab0ac"}
PENDING = "#e15759"
CLOSE = "#f28e2b"
RESET = "#d62728"
INK = "#222"
FAINT = "#888"

STYLE = ("text{font-family:DejaVu Sans,Verdana,Arial,sans-serif;font-size:11px;fill:#222}"
         ".t{fill:#555}.f{fill:#888;font-size:10px}.dim{fill:#888}.pause{fill:#666;font-style:italic}"
         ".pend{fill:#c0282b;font-weight:bold}.close{fill:#b35900;font-weight:bold}"
         ".rst{fill:#c0282b;font-weight:bold}.end{font-weight:bold;font-size:12px}"
         ".badge{fill:#fff;font-size:10px;font-weight:bold}")


def pause_room(seconds):
    """Extra room (px) a pause takes: nothing under a millisecond, then growing with
    its logarithm, at most 64."""
    if seconds < 0.001:
        return 0
    return min(64, 8 + 14 * math.log10(seconds * 1000))


def picture(detail, element_id=None, numbers=None):
    """The SVG of one connection (a ``detail.Detail``), as a string. ``numbers``:
    {frame: [finding numbers]} to badge (default: the report's findings, from 1)."""
    report = detail.report
    if numbers is None:
        numbers = {}
        for i, f in enumerate(report.findings, 1):
            numbers.setdefault(f.frame, []).append(i)
    pieces = detail.pieces()
    beyond = detail.records_beyond_reach()
    closer_rst = words.closer_rst_frame(detail)
    close = report.close
    start = detail.start
    out = []                   # the drawing, top to bottom
    bars = {}                  # (role, index) -> [top, bottom, kind, pending]
    reach_mark = None          # (y, role) where the first closer's reach falls among the peer's parts
    y = TOP + 10
    last_time = None
    acks = {True: 0, False: 0}
    close_y = None

    def text(x, y, body, cls=None, anchor=None, title=None):
        attrs = f' x="{x:.1f}" y="{y:.1f}"'
        if cls:
            attrs += f' class="{cls}"'
        if anchor:
            attrs += f' text-anchor="{anchor}"'
        inner = escape(body)
        if title:
            inner = f"<title>{escape(title)}</title>" + inner
        out.append(f"<text{attrs}>{inner}</text>")

    items = detail.drawn(pieces, beyond)
    position = 0
    packets = detail.packets

    def advance(stop):
        nonlocal position
        while position < len(packets) and packets[position] is not stop:
            p = packets[position]
            if isinstance(p, d.Packet) and p.pure_ack:
                acks[p.from_client] += 1
            position += 1
        position += 1

    for item in items:
        first = item[0] if isinstance(item, list) else item
        advance(first)
        t = first.first_time if isinstance(first, d.Omitted) else first.time
        gap_top = y
        pause = t - last_time if last_time is not None else 0.0
        y += pause_room(pause)
        if acks[True] or acks[False]:
            y = max(y, gap_top + 14)
        if pause >= words.PAUSE:
            out.append(f'<line x1="{CLIENT_X}" y1="{gap_top:.1f}" x2="{SERVER_X}" y2="{gap_top:.1f}" '
                       f'stroke="#ddd" stroke-dasharray="2,3"/>')
            text(TIME_X, (gap_top + y) / 2 + 4, words.seconds(pause), "pause", "end")
        if acks[True] or acks[False]:
            text((CLIENT_X + SERVER_X) / 2, gap_top + 10, _acks(acks), "dim", "middle")
        acks[True] = acks[False] = 0
        if isinstance(item, (d.Omitted, list)):
            if isinstance(item, d.Omitted):
                middle = f"⋮ {item.packets} packets not kept"
                beside = (f"frames {item.first_frame}-{item.last_frame}, "
                          f"{words.seconds(item.last_time - item.first_time)}")
                x, anchor = SERVER_X + BAR + 12, "start"
                last_time = item.last_time
            else:
                role = "client" if item[0].from_client else "server"
                size = sum(p.length for p in item)
                middle = f"⋮ {len(item)} more segments"
                beside = f"{size} B of app data in {words.seconds(item[-1].time - item[0].time)}"
                x, anchor = (CLIENT_X - BAR - 12, "end") if role == "client" else (SERVER_X + BAR + 12, "start")
                last_time = item[-1].time
                advance(item[-1])
                for p in item:
                    for piece in pieces.get(p.frame, ()):
                        key = (role, piece.record.index)
                        if key in bars:
                            bars[key][1] = y + ROW
            text((CLIENT_X + SERVER_X) / 2, y + 13, middle, "dim", "middle")
            text(x, y + 13, beside, "dim", anchor)
            y += ROW
            continue
        packet = item
        last_time = packet.time
        role = "client" if packet.from_client else "server"
        carried = pieces.get(packet.frame, [])
        rows = max(1, min(len(carried), MAX_PIECES))
        height = max(ROW, rows * PIECE + 4)
        arrow_y = y + 10
        # time, frame, finding badges
        text(TIME_X, arrow_y + 4, _stamp(packet.time - start, detail), "t", "end")
        text(FRAME_X, arrow_y + 4, f"#{packet.frame}", "f")
        for k, number in enumerate(numbers.get(packet.frame, ())):
            cx = FRAME_X + 44 + k * 18
            out.append(f'<circle cx="{cx}" cy="{arrow_y:.1f}" r="7" fill="#c0282b"/>')
            text(cx, arrow_y + 3.5, str(number), "badge", "middle")
        # the record parts it carried, on the sender's side
        colour = INK
        label_x = CLIENT_X - BAR - 12 if packet.from_client else SERVER_X + BAR + 12
        bar_x = CLIENT_X - BAR - 4 if packet.from_client else SERVER_X + 4
        anchor = "end" if packet.from_client else "start"
        for k, piece in enumerate(carried[:MAX_PIECES]):
            key = (role, piece.record.index)
            kind = detail.kind.get(key, d.OTHER)
            top = y + 2 + k * PIECE
            long_text, split_header = words.piece_words(piece, role, kind)
            label = f"{words.tag(role, piece.record.index)} {words.what(piece.record, kind, short=True)} " \
                    f"{piece.record.length}"
            if piece.parts > 1 or not piece.record.complete:
                label += f" · part {piece.part}/{piece.parts}" if piece.record.complete else f" · part {piece.part}, incomplete"
            if split_header:
                label += " · header split"
            pending = key in beyond and piece.end > close.reach and kind != d.ALERT
            mark = words.pending_words(detail, packet, role, closer_rst) if pending else None
            cls = None
            fill = COLOURS.get(kind, COLOURS[d.OTHER])
            if mark is not None:
                label += f" ✗ {mark[0]}"
                long_text += f": {mark[0]}, {mark[1]}"
                fill, cls, colour = PENDING, "pend", PENDING
            bar = bars.setdefault(key, [top, top + PIECE - 2, kind, False])
            bar[1] = top + PIECE - 2
            bar[3] = bar[3] or mark is not None
            out.append(f'<rect x="{bar_x}" y="{top:.1f}" width="{BAR}" height="{PIECE - 2}" fill="{fill}" '
                       f'stroke="#fff" stroke-width="1"><title>{escape(long_text)}</title></rect>')
            if split_header:
                out.append(f'<path d="M{bar_x} {top + 3:.1f} l{BAR / 2} 3 l{BAR / 2} -3" fill="none" '
                           f'stroke="#ffd400" stroke-width="2"/>')
            if packet.from_client and len(label) > CLIENT_LABEL:
                label = label[:CLIENT_LABEL - 1] + "…"      # (the whole of it in its title)
            text(label_x, top + 11, label, cls, anchor, long_text)
            # the reach falls in or at the end of this part of the peer's records
            if close.first_closer is not None and role != close.first_closer and close.reach is not None \
                    and piece.start < close.reach <= piece.end:
                share = (close.reach - piece.start) / max(1, piece.end - piece.start)
                reach_mark = (top + share * (PIECE - 2), role, piece)
        if len(carried) > MAX_PIECES:
            text(label_x, y + 2 + MAX_PIECES * PIECE + 10, f"+{len(carried) - MAX_PIECES} more records",
                 "dim", anchor)
            height += PIECE
        if packet.length and not carried:
            text(label_x, y + 13, "retransmission or bytes outside TLS records", "dim", anchor)
        # the arrow
        width, dash, cls = 1.2, "", None
        if packet.icmp:
            colour, dash, cls = COLOURS[d.ALERT], ' stroke-dasharray="2,2"', None
            text(label_x, y + 13, words.icmp_words(packet), "dim", anchor)
        elif packet.flags & (FIN | RST):
            first = packet.frame == close.frame
            colour = RESET if packet.flags & RST else CLOSE
            width = 3 if first else 2
            cls = "rst" if packet.flags & RST else "close"
            if first:
                close_y = arrow_y
        elif not packet.length:
            colour, dash = FAINT, ' stroke-dasharray="4,3"'
        rightwards = packet.from_client != packet.icmp     # (an ICMP error goes back to the quoted sender)
        x1, x2 = (CLIENT_X, SERVER_X - 8) if rightwards else (SERVER_X, CLIENT_X + 8)
        tip = SERVER_X if rightwards else CLIENT_X
        head = -8 if rightwards else 8
        out.append(f'<line x1="{x1}" y1="{arrow_y:.1f}" x2="{x2}" y2="{arrow_y:.1f}" stroke="{colour}" '
                   f'stroke-width="{width}"{dash}/>')
        out.append(f'<path d="M{tip} {arrow_y:.1f} l{head} -4 l0 8 z" fill="{colour}"/>')
        label = words.flag_words(packet.flags)
        if packet.length:
            label = (label + " " if label else "") + f"{packet.length} B"
        if packet.flags & (FIN | RST) and not packet.icmp:
            closer = "client" if packet.from_client else "server"
            label += f": {closer} closes first" if packet.frame == close.frame else \
                f": {closer} {'resets' if packet.flags & RST else 'closes'}"
        text((CLIENT_X + SERVER_X) / 2, arrow_y - 3, label, cls, "middle")
        y += height
    advance(None)
    if acks[True] or acks[False]:
        text((CLIENT_X + SERVER_X) / 2, y + 12, _acks(acks), "dim", "middle")
        y += 16
    bottom = y + 16

    # records as bars along the segments that carried them
    underlay = []
    for (role, index), (top, end, kind, pending) in bars.items():
        if end - top <= PIECE:
            continue
        x = CLIENT_X - BAR - 4 if role == "client" else SERVER_X + 4
        colour = PENDING if pending else COLOURS.get(kind, COLOURS[d.OTHER])
        underlay.append(f'<rect x="{x - 2}" y="{top - 1:.1f}" width="{BAR + 4}" height="{end - top + 2:.1f}" '
                        f'fill="{colour}" fill-opacity="0.22" stroke="{colour}" stroke-width="1" rx="2"/>')
    # the first closer's reach, on the peer's records
    if reach_mark is not None and close_y is not None:
        ry, role, piece = reach_mark
        x0 = CLIENT_X - BAR - 8 if role == "client" else SERVER_X
        x1 = CLIENT_X if role == "client" else SERVER_X + BAR + 8
        lx = SERVER_X + BAR + 10 if role == "server" else CLIENT_X - BAR - 10
        out.append(f'<line x1="{x0}" y1="{ry:.1f}" x2="{x1}" y2="{ry:.1f}" stroke="{CLOSE}" stroke-width="3"/>')
        line_x = SERVER_X - 3 if role == "server" else CLIENT_X + 3
        out.append(f'<line x1="{line_x}" y1="{ry:.1f}" x2="{line_x}" y2="{close_y:.1f}" stroke="{CLOSE}" '
                   f'stroke-width="1.5" stroke-dasharray="5,3"/>')
        record = piece.record
        name = words.tag(role, record.index)
        if close.reach == record.offset + 5 + record.length:
            where = f"= end of {name}"
        else:
            where = f"inside {name}: {close.reach - record.offset} of {5 + record.length} B"
        side = "start" if role == "server" else "end"
        text(lx, ry + 12, f"▲ {close.first_closer}'s reach {close.reach}", "close", side)
        text(lx, ry + 25, where, "close", side)

    head = [f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom:.1f}" stroke="#444" stroke-width="1.5"/>'
            for x in (CLIENT_X, SERVER_X)]
    names = [f'<text x="{CLIENT_X}" y="20" text-anchor="middle" class="end">client</text>',
             f'<text x="{CLIENT_X}" y="36" text-anchor="middle" class="t">{escape(report.client)}</text>',
             f'<text x="{SERVER_X}" y="20" text-anchor="middle" class="end">server</text>',
             f'<text x="{SERVER_X}" y="36" text-anchor="middle" class="t">'
             f'{escape(report.server)}{escape(" · " + detail.sni) if detail.sni else ""}</text>',
             f'<text x="{TIME_X}" y="36" text-anchor="end" class="t">{"ms" if _in_ms(detail) else "s"}</text>',
             f'<text x="{FRAME_X}" y="36" class="f">frame</text>']
    ident = f' id="{escape(element_id)}"' if element_id else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg"{ident} class="ladder" width="{WIDTH}" '
            f'height="{bottom:.0f}" viewBox="0 0 {WIDTH} {bottom:.0f}" data-file="{escape(detail.file)}" '
            f'data-stream="{detail.stream}" role="img" aria-label="{escape(_summary(detail))}">'
            f"<style>{STYLE}</style>" + "".join(underlay + head + names + out) + "</svg>")


def _in_ms(detail):
    packets = [p for p in detail.packets if isinstance(p, d.Packet)]
    return not packets or packets[-1].time - detail.start < 10


def _stamp(rel, detail):
    return f"{rel * 1000:.3f}" if _in_ms(detail) else f"{rel:.6f}"


def _acks(acks):
    client, server = acks[True], acks[False]
    parts = []
    if server:
        parts.append(f"← {server} ACK{'s' * (server > 1)}")
    if client:
        parts.append(f"{client} ACK{'s' * (client > 1)} →")
    return " · ".join(parts)


def _summary(detail):
    r = detail.report
    return (f"tcp.stream {detail.stream}: client {r.client}, server {r.server}, "
            f"{len(r.findings)} finding(s)")
