"""Connection -> findings: one rule per code of SIGNATURES.md.

``evaluate(facts)`` runs the rules over the ``Facts`` of one finished TLS
connection and returns its ``Finding``s in frame order. Each rule is one row of
the table of SIGNATURES.md in code, reads only the facts, and returns one
``Finding`` or None: first the rules on the first closer's close against the
peer's records (``CLOSER_RULES``, of which the first three exclude each other
by where the reach falls), then the rules on each side's own close
(``SIDE_RULES``).
"""

import dataclasses
from dataclasses import field
from operator import attrgetter

from ..tls import wire
from .codes import CODES, Severity
from .facts import UNSEEN_ALERT, ends_on_boundary, last_received, type_name
from .frozen import frozen

# A FIN this close after the side's last data came "back to back" with it.
BACK_TO_BACK = 0.010


@frozen
class Finding:
    """One premature-close signature found on a connection."""

    code: str
    """The signature, as in SIGNATURES.md (``close_before_pending_records``...)."""
    severity: Severity
    """``high``, ``medium``, ``low`` or ``info`` (a ``Severity``, which is also that word)."""
    confidence: str
    """``high``; ``medium`` or ``low`` when it rests on bytes the capture missed (the reason is in the evidence)."""
    side: str
    """``client`` or ``server``: the side that did the thing."""
    time: float
    """Capture time of the packet that shows it (seconds since the epoch)."""
    frame: int
    """Its frame number, 1-based, as Wireshark shows it."""
    message: str
    """One line a person reads."""
    evidence: dict = field(default_factory=dict)
    """The facts behind it (keys per code, see the README)."""
    wireshark_filter: str = None
    """A Wireshark display filter that shows its packets (``display_filter``, set by the
    rule that finds it: ``tcp.stream eq N && frame.number >= F``)."""

    def with_filter(self, wireshark_filter):
        """This finding with ``wireshark_filter`` set: what ``dataclasses.replace``
        gives, without its cost (it reads the fields anew at each call; the report
        makes one for each finding given to it without a filter)."""
        return Finding(*_VALUES(self), wireshark_filter)


# the values of its fields but the last (wireshark_filter), in order
_VALUES = attrgetter(*(f.name for f in dataclasses.fields(Finding)[:-1]))


def _finding(f, code, side, time, frame, message, evidence, severity=None, confidence="high",
             why=None):
    """A finding on the connection of ``f``, its Wireshark filter with it; ``why``
    (the reason its confidence is below high) goes into its evidence."""
    if why:
        evidence["confidence_reason"] = why
    return Finding(code, CODES[code].severity if severity is None else Severity.of(severity),
                   confidence, side, time, frame, message, evidence,
                   display_filter(f.conn.stream, frame, evidence))


def evidence_frames(evidence, into=None):
    """Every frame number a finding's evidence names (keys ``frame`` and ``*_frame``,
    nested dicts included), as a list (``into``, when given, is added to)."""
    frames = [] if into is None else into
    for key, value in evidence.items():
        if type(value) is int:
            if value > 0 and (key == "frame" or key.endswith("_frame")):
                frames.append(value)
        elif isinstance(value, dict):
            evidence_frames(value, frames)
        elif isinstance(value, int) and not isinstance(value, bool) and value > 0 \
                and (key == "frame" or key.endswith("_frame")):
            frames.append(value)
    return frames


def display_filter(stream, frame, evidence):
    """The display filter that shows a finding's packets in Wireshark: its stream from the
    earliest frame the finding names (its own ``frame``, or one of its ``evidence``) on."""
    first = min(evidence_frames(evidence, [frame]))
    return f"tcp.stream eq {stream} && frame.number >= {first}"


def _ms(seconds):
    if seconds is None:
        return "?"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


# -- rules on the first closer's reach -----------------------------------------

def close_inside_record(f):
    if f.closer is None:
        return None
    record = f.inside
    if record is None:
        return None
    closer, peer, reach = f.closer, f.peer, f.reach
    close = closer.close
    if not record.complete and peer.close is not None and peer.close.frame < close.frame:
        return None  # the peer itself stopped inside it: truncated_record
    reaction, reaction_kind = f.reaction(closer)
    received = [end for end in record.segment_ends if end <= reach]
    confidence, why = f.confidence(closer, peer, [record])
    # an abandoned or stalled handshake (close_during_handshake says it), not the bug
    handshake_only = not f.sent_application_data(closer) and f.is_handshake(peer, record)
    evidence = {
        "record_index": record.index, "record_type": type_name(record.type),
        "record_length": record.length, "record_offset": record.offset,
        "bytes_received": reach - record.offset,
        "bytes_total": record.size,
        "segments_received": len(received), "segments_total": len(record.frames),
        "header_split": record.header_split,
        "reaction_time": reaction, "close": reaction_kind,
        "record_first_frame": record.first_frame, "record_last_frame": record.last_frame,
        "rest_captured": record.complete, "handshake_only": handshake_only,
    }
    closer_role, peer_role = f.role(closer), f.role(peer)
    message = (f"{closer_role} closed ({close.kind.upper()}, frame {close.frame}) with "
               f"{reach - record.offset} of {record.size} bytes of {peer_role} record "
               f"#{record.index} ({type_name(record.type)}) received, "
               f"{len(received)}/{len(record.frames)} segments; {_ms(reaction)} after its last segment")
    return _finding(f, "close_inside_record", closer_role, close.time, close.frame, message, evidence,
                    severity="info" if handshake_only else None, confidence=confidence, why=why)


def _pending_data(f):
    """The peer's records beyond the reach that are not alerts."""
    return [r for r in f.records(f.peer) if r.offset >= f.reach and not f.is_alert(f.peer, r)]


def close_before_pending_records(f):
    if f.closer is None or f.inside is not None:
        return None
    pending_data = _pending_data(f)
    if not pending_data:
        return None
    closer, peer = f.closer, f.peer
    close = closer.close
    records = f.records(peer)
    first = pending_data[0]
    received = last_received(records, f.reach)
    aligned = bool(ends_on_boundary(closer, records))
    pause = first.first_time - received.last_time if received else None
    no_data = not f.sent_application_data(closer)
    post_handshake_only = no_data and all(f.is_post_handshake(peer, r) for r in pending_data)
    # the peer's handshake flight (or part of it) and what follows it: an abandoned
    # or stalled handshake, a preconnect (close_during_handshake says it)
    handshake_only = no_data and not post_handshake_only and f.is_handshake(peer, first)
    farewell = not (post_handshake_only or handshake_only) and f.is_farewell(closer, pending_data)
    reaction, reaction_kind = f.reaction(closer)
    confidence, why = f.confidence(closer, peer, pending_data[:1])
    evidence = {
        "records_pending": len(pending_data),
        "bytes_pending": sum(r.size for r in pending_data),
        "aligned": aligned,
        "reaction_time": reaction, "close": reaction_kind,
        "peer_pause": pause,
        "first_pending": {"index": first.index, "type": type_name(first.type),
                          "length": first.length, "frame": first.first_frame,
                          "time": first.first_time},
        "last_received": None if received is None else {
            "index": received.index, "type": type_name(received.type),
            "length": received.length, "frame": received.last_frame,
            "straddling": received.straddling},
        "post_handshake_only": post_handshake_only,
        "handshake_only": handshake_only,
        "peer_farewell": farewell,
    }
    closer_role, peer_role = f.role(closer), f.role(peer)
    if post_handshake_only:
        what = "post-handshake records (session tickets)"
    elif handshake_only:
        what = f"the {peer_role}'s handshake flight"
    elif farewell:
        what = f"the {peer_role}'s farewell ({len(pending_data)} record(s), {evidence['bytes_pending']} bytes, answering the close)"
    else:
        what = f"{len(pending_data)} {peer_role} record(s), {evidence['bytes_pending']} bytes,"
    message = (f"{closer_role} closed ({close.kind.upper()}, frame {close.frame}) "
               f"{_ms(reaction)} after a {peer_role} segment that ended "
               f"{'on' if aligned else 'off'} a record boundary; {what} still to come "
               f"(next record frame {first.first_frame}, {_ms(pause)} after the last)")
    severity = "info" if post_handshake_only or handshake_only else "low" if farewell else None
    return _finding(f, "close_before_pending_records", closer_role, close.time, close.frame, message,
                    evidence, severity=severity, confidence=confidence, why=why)


def close_before_peer_finished(f):
    if f.closer is None or not f.records(f.peer) or f.inside is not None or _pending_data(f):
        return None
    closer, peer = f.closer, f.peer
    close = closer.close
    last_request = f.last_application_data(closer)
    if last_request is None or peer.close is None or peer.close.kind != "rst" \
            or peer.close.frame <= close.frame:
        return None
    last_answer = f.last_application_data(peer)
    answered = last_answer is not None and last_answer.last_frame > last_request.last_frame
    if closer is f.server and not answered:
        return None  # the server's data had the last word: the client owed it no answer
    peer_alert = f.alert_before(peer, peer.close.frame)
    if peer_alert is not None and last_answer is not None \
            and peer_alert.first_frame < last_answer.last_frame:
        peer_alert = None             # an alert before its last data closed nothing
    if peer_alert is not None:
        return None  # the peer closed the TLS session itself before its RST: it had finished
    alert = f.alert_before(closer, close.frame)
    reaction, reaction_kind = f.reaction(closer)
    confidence, why = f.confidence(closer, peer)
    unseen = f.unseen_by_peer(closer) if alert is None else 0
    if unseen:
        confidence = "low" if confidence != "high" else "medium"
        why = "; ".join(filter(None, (why, _unseen_reason(f, closer, unseen))))
    evidence = {"reaction_time": reaction, "close": reaction_kind,
                "alert_first": alert is not None,
                "peer_answered": answered,
                "peer_alert_first": peer_alert is not None,
                "peer_rst_frame": peer.close.frame}
    closer_role, peer_role = f.role(closer), f.role(peer)
    message = (f"{closer_role} closed ({close.kind.upper()}, frame {close.frame}, {reaction_kind}, "
               f"{_ms(reaction)} after the {peer_role}'s last segment) and the {peer_role} "
               f"answered with RST (frame {peer.close.frame}): it had not finished"
               + ("" if answered else "; its request was never answered"))
    return _finding(f, "close_before_peer_finished", closer_role, close.time, close.frame, message,
                    evidence, confidence=confidence, why=why)


def close_during_handshake(f):
    closer = f.closed_during_handshake
    if closer is None:
        return None
    close = closer.close
    role = f.role(closer)
    sides = (f.client, f.server)
    evidence = {"version": f.version, "records": {f.role(s): s.total for s in sides},
                "handshake_messages": {f.role(s): sorted({wire.HANDSHAKE_TYPES.get(m, str(m))
                                                          for r in f.records(s) for m in r.messages})
                                       for s in sides}}
    message = (f"{role} closed ({close.kind.upper()}, frame {close.frame}) before the TLS handshake "
               f"completed, without an alert")
    return _finding(f, "close_during_handshake", role, close.time, close.frame, message, evidence)


CLOSER_RULES = (close_inside_record, close_before_pending_records, close_before_peer_finished,
                close_during_handshake)


# -- rules on each side ---------------------------------------------------------

def _stopped_mid_record(side):
    """The side's incomplete last record, when its stream ended inside one."""
    partial = side.partial
    return partial if partial is not None and partial.complete is False else None


def truncated_record(f, side):
    partial = _stopped_mid_record(side)
    close = side.close
    if partial is None or close is None:
        return None
    stream = side.stream
    at_end = partial.offset + partial.received == stream.next and not partial.missing
    if not (at_end and close.offset == stream.next):
        return None
    role = f.role(side)
    evidence = {"record_index": partial.index, "record_type": type_name(partial.type),
                "record_length": partial.length, "bytes_sent": partial.received,
                "bytes_missing": partial.size - partial.received,
                "close_kind": close.kind}
    if stream.gaps:
        evidence["confidence_reason"] = f"{stream.gaps} capture gap(s) earlier in its stream"
    return _finding(
        f, "truncated_record", role, close.time, close.frame,
        f"{role} stopped mid-record: its record #{partial.index} ({type_name(partial.type)}) "
        f"announced {partial.size} bytes, {partial.received} were sent before its "
        f"{close.kind.upper()} (frame {close.frame})", evidence,
        confidence="high" if not stream.gaps else "medium")


def capture_ended_inside_record(f, side):
    partial = _stopped_mid_record(side)
    if partial is None or side.close is not None or side.rst is not None \
            or f.conn.peer(side).rst is not None:
        return None
    role = f.role(side)
    return _finding(
        f, "capture_ended_inside_record", role, partial.last_time or 0.0, partial.last_frame,
        f"capture ends inside {role} record #{partial.index} ({partial.received} of "
        f"{partial.size} bytes) with no close: nothing can be said",
        {"record_index": partial.index, "record_type": type_name(partial.type),
         "record_length": partial.length, "bytes_seen": partial.received})


def reset_on_data_after_close(f, side):
    close = side.close
    if close is None or close.kind != "fin" or side.rst is None or side.rst.frame <= close.frame:
        return None
    peer = f.conn.peer(side)
    rst_frame = side.rst.frame
    # the bytes of each peer record that came in segments after the FIN, up to the RST
    after = []
    for r in f.records(peer):
        start = r.offset
        came = 0
        first = None
        for frame, end in zip(r.frames, r.segment_ends):
            if close.frame < frame <= rst_frame:
                came += end - start
                first = first or frame
            start = end
        if came:
            after.append((r, came, first))
    arrived = [r for r, _, _ in after]
    if not arrived:
        return None
    data = [r for r in arrived if not f.is_alert(peer, r)]
    if not data:
        lost = "alert"                # only an alert: the peer's close_notify answering ours
    elif all(f.is_handshake(peer, r) for r in data):
        lost = "handshake"            # an abandoned or stalled handshake
    elif not f.sent_application_data(side) and all(f.is_post_handshake(peer, r) for r in data):
        lost = "post_handshake"       # TLS 1.3 session tickets, as in close_before_pending_records
    elif f.is_farewell(side, data):
        lost = "farewell"             # the peer's answer to the close itself
    else:
        lost = "application_data"
    evidence = {"lost": lost, "records_lost": len(arrived),
                "bytes_lost": sum(came for _, came, _ in after),
                "fin_frame": close.frame, "rst_frame": rst_frame,
                "first_lost_frame": min(first for _, _, first in after)}
    what = {"alert": "an alert", "handshake": "its handshake",
            "post_handshake": "post-handshake messages, session tickets",
            "farewell": "its farewell, answering the close", "application_data": "application data"}[lost]
    role, peer_role = f.role(side), f.role(peer)
    return _finding(
        f, "reset_on_data_after_close", role, side.rst.time, rst_frame,
        f"{role} had sent its FIN (frame {close.frame}); {len(arrived)} {peer_role} record(s) "
        f"({what}) arrived after it and it answered RST (frame {rst_frame})"
        + (": that data was lost" if lost == "application_data" else ""),
        evidence, severity=None if lost == "application_data" else "info")


def close_with_unread_data(f, side):
    """FIN, then a RST nothing from the peer provoked: a socket closed with data unread."""
    close = side.close
    if close is None or close.kind != "fin" or side.rst is None or side.rst.frame <= close.frame:
        return None
    peer = f.conn.peer(side)
    if side is not f.closer or peer.stream.base is None:
        return None                   # it answered the peer's close; or the peer is not in the capture
    fin_frame, rst_frame = close.frame, side.rst.frame
    if any(fin_frame < segment.frame < rst_frame for segment in peer.recent_segments()):
        return None                   # peer data came in between: reset_on_data_after_close
    for mark in (peer.fin, peer.rst):
        if mark is not None and fin_frame < mark.frame < rst_frame:
            return None               # it answered the peer's own close
    last_sent = f.last_application_data(side)
    since = last_sent.last_frame if last_sent is not None else 0
    unread = [r for r in f.records(peer, True) if since < r.last_frame < fin_frame]
    handshake_only = last_sent is None and not f.sent_application_data(side) and bool(unread) \
        and all(f.is_handshake(peer, r) or f.is_alert(peer, r) for r in unread)
    reaction, reaction_kind = f.reaction(side)
    role, peer_role = f.role(side), f.role(peer)
    evidence = {"fin_frame": fin_frame, "rst_frame": rst_frame, "records_unread": len(unread),
                "bytes_unread": sum(r.size for r in unread), "reaction_time": reaction,
                "close": reaction_kind, "handshake_only": handshake_only}
    what = f"{len(unread)} {peer_role} record(s), {evidence['bytes_unread']} bytes, had come since its " \
           f"last request" if unread else "nothing had come since its last request"
    return _finding(
        f, "close_with_unread_data", role, side.rst.time, rst_frame,
        f"{role} sent its FIN (frame {fin_frame}), then a RST (frame {rst_frame}) that nothing from the "
        f"{peer_role} provoked: it closed its socket with data unread ({what})",
        evidence, severity="info" if handshake_only else None)


def no_close_notify(f, side):
    close = side.close
    if close is None or side is f.closed_during_handshake:
        return None
    handshake_complete = f.handshake_frame is not None and close.frame >= f.handshake_frame
    if not (handshake_complete or not f.handshake_known):
        return None
    if f.alert_before(side, close.frame) is not None or not side.total:
        return None
    evidence = {"close_kind": close.kind, "version": f.version}
    confidence = "high"
    if f.tls13:
        confidence = "medium"
        evidence["note"] = ("TLS 1.3 alerts are encrypted: no record of alert size "
                            f"({wire.TLS13_ALERT_LENGTHS[0]} bytes) came just before the close")
    elif f.version is None:
        confidence = "medium"
        evidence["note"] = ("the handshake was not captured: if this is TLS 1.3, an encrypted "
                            "alert would not show as one")
    unseen = f.unseen_by_peer(side)
    if unseen:
        confidence = "low" if confidence == "medium" else "medium"
        evidence["confidence_reason"] = _unseen_reason(f, side, unseen)
    role = f.role(side)
    return _finding(
        f, "no_close_notify", role, close.time, close.frame,
        f"{role} closed ({close.kind.upper()}, frame {close.frame}) without a TLS alert first",
        evidence, confidence=confidence)


def _unseen_reason(f, side, unseen):
    low, high = UNSEEN_ALERT
    alert = f" (an alert is {low} to {high} bytes)" if low <= unseen <= high else ""
    return (f"the {f.role(f.peer_of(side))} acknowledged {unseen} bytes of the {f.role(side)}'s "
            f"before its close that the capture does not hold{alert}")


def abortive_close(f, side):
    close = side.close
    if close is None or close.kind != "rst":
        return None
    peer = f.conn.peer(side)
    answered_peer_close = peer.close is not None and peer.close.frame < close.frame
    role = f.role(side)
    return _finding(
        f, "abortive_close", role, close.time, close.frame,
        f"{role} reset the connection (RST, frame {close.frame})"
        + (f" in answer to the {f.role(peer)}'s {peer.close.kind.upper()}" if answered_peer_close else ""),
        {"answered_peer_close": answered_peer_close})


def fast_close_after_data(f, side):
    close = side.close
    if close is None or close.kind != "fin":
        return None
    peer = f.conn.peer(side)
    if peer.close is not None and peer.close.frame <= close.frame:
        return None
    peer_segment = side.close_peer_segment
    after = peer_segment.frame if peer_segment else 0
    trailing = [r for r in f.records(side, True)
                if after < r.last_frame <= close.frame]
    data = [r for r in trailing if not f.is_alert(side, r)]
    if not data:
        return None
    last = data[-1]
    gap = close.time - last.last_time
    same_segment = last.last_frame == close.frame
    if not same_segment and gap > BACK_TO_BACK:
        return None
    role = f.role(side)
    evidence = {"records": len(trailing), "same_segment": same_segment, "fin_after": gap,
                "last_record": {"index": last.index, "type": type_name(last.type), "frame": last.last_frame},
                "alert_before_fin": any(f.is_alert(side, r) for r in trailing)}
    how = "in the same segment" if same_segment else f"{_ms(gap)} later"
    return _finding(f, "fast_close_after_data", role, close.time, close.frame,
                    f"{role} sent its last record(s) and its FIN {how} (frame {close.frame})",
                    evidence)


SIDE_RULES = (truncated_record, capture_ended_inside_record, reset_on_data_after_close,
              close_with_unread_data, no_close_notify, abortive_close, fast_close_after_data)


def evaluate(facts):
    """All findings of a finished TLS connection (its ``Facts``), in frame order."""
    found = [finding for rule in CLOSER_RULES if (finding := rule(facts)) is not None]
    for side in (facts.conn.a, facts.conn.b):
        found += [finding for rule in SIDE_RULES if (finding := rule(facts, side)) is not None]
    found.sort(key=lambda finding: (finding.frame, -finding.severity.rank))
    return found
