"""The words a picture uses for records, closes and pauses: shared by the text ladder
and the SVG, so both say the same thing."""

from ..frame import ACK, FIN, ICMP_QUOTE, RST, SYN
from ..tls import wire
from . import detail as d

PAUSE = 0.010       # a pause between packets this long or longer is shown
KIND_WORDS = {d.HANDSHAKE: "handshake", d.CCS: "change_cipher_spec", d.ALERT: "alert",
              d.APPLICATION_DATA: "app data", d.ENCRYPTED_HANDSHAKE: "app data (handshake)",
              d.POST_HANDSHAKE: "app data (post-handshake)", d.OTHER: "record"}


def tag(role, index):
    """``C#3``: the client's record 3 (from 0); ``S#7`` the server's."""
    return f"{'C' if role == 'client' else 'S'}#{index}"


def seconds(value):
    """A duration a person reads: ``100.5 ms``, ``2.35 s``."""
    if value is None:
        return "?"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def message_names(record):
    """The handshake messages that start in a record: ``ServerHello Certificate``."""
    return " ".join("".join(part.capitalize() for part in wire.HANDSHAKE_TYPES.get(m, str(m)).split("_"))
                    for m in record.messages)


def what(record, kind, short=False, names=True):
    """What a record is, in a few words: ``handshake ServerHello``, ``app data``...
    (``short``: fewer words where there are many; ``names``: the handshake messages)."""
    if kind == d.HANDSHAKE:
        if not record.messages:
            return "handshake (encrypted)"
        return f"handshake {message_names(record)}" if names else "handshake"
    if kind == d.ALERT and record.alert is not None:
        return f"alert {wire.ALERT_DESCRIPTIONS.get(record.alert[1], record.alert[1])}"
    if kind == d.ALERT and record.type == wire.APPLICATION_DATA:
        return "alert? (by its size)" if short else "app data (an encrypted alert, by its size)"
    if kind == d.ALERT:
        return "alert (encrypted)"
    if kind == d.OTHER:
        return wire.CONTENT_TYPES.get(record.type, f"type {record.type}")
    return KIND_WORDS[kind]


def piece_words(piece, role, kind):
    """A record part as one line: ``S#8 app data len 8119: part 1/2, 4096 of 8124 B``;
    and whether its header was split in this part."""
    r = piece.record
    text = f"{tag(role, r.index)} {what(r, kind, names=piece.part == 1)} len {r.length}"
    total = wire.HEADER_LENGTH + r.length
    split_header = r.header_frames > 1 and 0 < piece.header_bytes
    if not r.complete:
        ends = "its stream ends inside it (incomplete)"
        if piece.parts == 1:
            text += f": {r.received} of {total} B, {ends}"
        else:
            text += f": part {piece.part}, {piece.end - piece.start} B"
            if piece.part == piece.parts:
                text += f"; {r.received} of {total} B in all, {ends}"
    elif piece.parts > 1:
        text += f": part {piece.part}/{piece.parts}, {piece.end - piece.start} of {total} B"
    if split_header:
        text += f" ({piece.header_bytes} of 5 header bytes: header split)"
    return text, split_header


def flag_words(flags):
    """The flags a ladder names: ``SYN``, ``SYN ACK``, ``FIN``, ``RST`` (``ICMP`` for an ICMP error)."""
    if flags & ICMP_QUOTE:
        return "ICMP"
    names = []
    if flags & SYN:
        names.append("SYN ACK" if flags & ACK else "SYN")
    if flags & FIN:
        names.append("FIN")
    if flags & RST:
        names.append("RST")
    return " ".join(names)


def icmp_words(packet):
    """What an ICMP error about the connection says."""
    role = "client" if packet.from_client else "server"
    flags = flag_words(packet.flags & 0xFF)
    return f"ICMP error quoting a {role} segment{' (' + flags + ')' if flags else ''}"


def close_words(detail, packet):
    """What a FIN or RST did, in words (the first closer's close says its reach)."""
    role = "client" if packet.from_client else "server"
    close = detail.report.close
    kind = "RST" if packet.flags & RST else "FIN"
    if packet.frame != close.frame:
        return f"{role} {'resets' if kind == 'RST' else 'closes'} ({kind})"
    peer = "server" if role == "client" else "client"
    reach = close.reach
    where = ""
    for r in detail.records.get(peer, ()):
        end = r.offset + wire.HEADER_LENGTH + r.length
        if end == reach:
            where = f" = end of {tag(peer, r.index)}"
        elif r.offset < reach < end:
            where = f": inside {tag(peer, r.index)} ({reach - r.offset} of {end - r.offset} B)"
            break
        elif r.offset == reach and not where:
            where = f" = start of {tag(peer, r.index)}"
    estimated = " (estimated: no ACK)" if close.reach_estimated else ""
    return f"{role} closes first ({kind}) · reach {reach}{estimated}{where}"


def pending_words(detail, packet, role, closer_rst):
    """(``pending`` or ``LOST``, why) for a peer record part beyond the first closer's
    reach (None when the sender is the first closer itself)."""
    close = detail.report.close
    if close.first_closer is None or role == close.first_closer:
        return None
    closer = close.first_closer
    when = (f"came after the {closer}'s {close.kind.upper()}" if packet.frame > close.frame
            else f"in flight at the {closer}'s {close.kind.upper()}")
    if closer_rst is not None and packet.frame < closer_rst:
        return "LOST", f"{when}, answered with RST"
    return "pending", when


def closer_rst_frame(detail):
    """The frame of the first closer's RST (None: it sent none)."""
    close = detail.report.close
    if close.first_closer is None:
        return None
    closer_is_client = close.first_closer == "client"
    for p in detail.packets:
        if isinstance(p, d.Packet) and p.from_client == closer_is_client and p.flags & RST and not p.icmp:
            return p.frame
    return None


def legend():
    """What the marks mean (once per output)."""
    return ("C#n / S#n: the client's / server's TLS record n (from 0), len its body length; "
            "part i/n: that record's bytes came in n TCP segments; header split: its 5-byte header "
            "came in two segments; reach: how far into the peer's bytes the first closer had "
            "received when it closed (byte offsets from the first byte after the SYN: Wireshark's "
            "relative seq - 1); pending: a peer record beyond that reach (not received when it "
            "closed); LOST: pending, and the closer then answered with RST; pauses of "
            f"{PAUSE * 1000:.0f} ms or more are shown between packets; pure ACKs are counted, not drawn.")
