"""Connection -> findings: the premature-close signatures of SIGNATURES.md.

``evaluate(conn)`` reads the facts a finished ``connection.Connection`` holds
(both sides' records, closes, gaps) and returns its ``Finding``s. Each rule
below is the table of SIGNATURES.md in code; the words follow it: the *first
closer* closed first, its *reach* is how far into the peer's side stream it
had received, the *reaction time* runs from the peer's last segment before
the close to the close.
"""

from dataclasses import dataclass, field

from . import tls

SEVERITIES = ("info", "low", "medium", "high")

# A FIN this close after the side's last data came "back to back" with it.
BACK_TO_BACK = 0.010
# A close this long after the peer's last segment (and longer than a few
# round trips) is an idle or timeout close, not a reaction to that data.
REACTION_FLOOR = 0.100
REACTION_RTTS = 4


@dataclass(frozen=True, slots=True)
class Finding:
    """One premature-close signature found on a connection."""

    code: str
    """The signature, as in SIGNATURES.md (``close_before_pending_records``...)."""
    severity: str
    """``high``, ``medium``, ``low`` or ``info``."""
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


def type_name(content_type):
    return tls.CONTENT_TYPES.get(content_type, str(content_type))


def _ms(seconds):
    if seconds is None:
        return "?"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class _View:
    """The facts of one connection, arranged for the rules."""

    def __init__(self, conn):
        self.conn = conn
        self.client = conn.client
        self.server = conn.server
        self.version = tls.version_name(conn.version)
        self.tls13 = self.version == "1.3"
        self.rtt = conn.rtt

    def role(self, side):
        return self.conn.role(side)

    def records(self, side, complete_only=False):
        """The side's kept records in stream order, its incomplete last one too."""
        kept = list(side.records)
        partial = side.tracker.partial if side.tracker is not None else None
        if partial is not None and not complete_only:
            kept.append(partial)
        return kept

    def is_alert(self, side, record):
        """An alert record; in TLS 1.3 an encrypted one of alert size counts too."""
        if record.type == tls.ALERT:
            return True
        # 19 bytes cannot be a Finished or any other handshake message of TLS 1.3
        return (self.tls13 and record.type == tls.APPLICATION_DATA and record.complete
                and record.length in tls.TLS13_ALERT_LENGTHS)

    def alert_before(self, side, frame):
        """The alert record the side sent last before ``frame``, if any."""
        before = [r for r in self.records(side, complete_only=True) if r.last_frame <= frame]
        if not before:
            return None
        if self.tls13:
            last = before[-1]
            return last if self.is_alert(side, last) else None
        alerts = [r for r in before if r.type == tls.ALERT]
        return alerts[-1] if alerts else None

    def handshake_started(self):
        """A ClientHello was seen (a pure SSLv2 connection has no TLS handshake to follow)."""
        trackers = [s.tracker for s in (self.client, self.server) if s.tracker is not None]
        if any(t.sslv2_hello == 0x0002 for t in trackers):
            return False
        return any(t.client_hello for t in trackers)

    def handshake_done_frame(self):
        """Frame at which the TLS handshake was complete, None if it never was."""
        client, server = self.client, self.server
        if self.tls13:
            finished = self.conn.client_finished()
            if finished is not None and server.type23_head:
                return finished.last_frame
            return None
        if client.finished is not None and server.finished is not None:
            return max(client.finished, server.finished)
        if client.type23_head and server.type23_head and self.version is not None:
            return 0  # application data flowed both ways: it was complete
        return None

    def reaction(self, side):
        """(reaction time, kind) of the side's close to the peer's last segment before it."""
        segment = side.close_peer_segment
        if segment is None:
            return None, "no peer data"
        seconds = side.close.time - segment[1]
        limit = max(REACTION_FLOOR, REACTION_RTTS * self.rtt) if self.rtt else REACTION_FLOOR
        return seconds, ("reaction" if seconds <= limit else "idle")

    def confidence(self, side, peer, records=()):
        """Confidence of a finding that rests on the peer's bytes around the close."""
        reasons = []
        if any(r.missing for r in records):
            reasons.append("the capture missed bytes of the records involved")
        level = "low" if reasons else "high"
        gaps = side.close.peer_gaps  # the holes in the peer's stream before this close
        if gaps:
            reasons.append(f"{gaps} capture gap(s) in the {self.role(peer)}'s stream before the close")
            level = "low" if level == "low" else "medium"
        if side.close.reach_estimated:
            reasons.append("the close carried no acknowledgment: reach estimated from the bytes captured before it")
            level = "low" if level == "low" else "medium"
        return level, "; ".join(reasons)


def first_closer(conn):
    """The side whose close came first (and so answered no close of the peer)."""
    closes = [s for s in (conn.a, conn.b) if s.close is not None]
    if not closes:
        return None
    return min(closes, key=lambda s: s.close.frame)


def evaluate(conn):
    """All findings of a finished TLS connection, in frame order."""
    view = _View(conn)
    found = []
    closer = first_closer(conn)
    handshake_frame = view.handshake_done_frame()
    handshake_known = view.handshake_started()
    during_handshake = set()
    if closer is not None:
        peer = conn.peer(closer)
        found += _close_vs_peer_records(view, closer, peer)
        if handshake_known and (handshake_frame is None or closer.close.frame < handshake_frame) \
                and view.alert_before(closer, closer.close.frame) is None:
            during_handshake.add(closer)
            found.append(_close_during_handshake(view, closer))
    for side in (conn.a, conn.b):
        peer = conn.peer(side)
        found += _side_rules(view, side, peer, closer, handshake_frame, handshake_known,
                             side in during_handshake)
    found.sort(key=lambda f: (f.frame, SEVERITIES.index(f.severity) * -1))
    return found


# -- rules on the first closer's reach -----------------------------------------

def reach_of(closer, peer):
    """The first closer's reach into the peer's stream (its ACK of the peer's FIN not counted)."""
    reach = closer.close.reach
    if peer.stream.fin is not None and reach > peer.stream.fin:
        reach = peer.stream.fin
    return reach


def close_position(conn):
    """Where the first close fell against the peer's records and segments.

    ``(aligned, last_record_straddled)``: whether the last peer segment
    received before the close ended exactly on a record boundary, and whether
    the last peer record wholly received before it straddled segments; None
    for what cannot be said (no close, no peer records).
    """
    closer = first_closer(conn)
    if closer is None:
        return None, None
    peer = conn.peer(closer)
    records = list(peer.records)
    if not records:
        return None, None
    return _aligned(closer, records), _last_received(records, reach_of(closer, peer), "straddling")


def _aligned(closer, records):
    segment = closer.close_peer_segment
    if segment is None:
        return None
    return any(segment[2] in (r.offset, r.end) for r in records)


def _last_received(records, reach, attribute=None):
    before = [r for r in records if r.complete and r.end <= reach]
    if not before:
        return None
    return getattr(before[-1], attribute) if attribute else before[-1]


def _close_vs_peer_records(view, closer, peer):
    close = closer.close
    reach = reach_of(closer, peer)
    records = view.records(peer)
    if not records:
        return []
    closer_role, peer_role = view.role(closer), view.role(peer)
    reaction, reaction_kind = view.reaction(closer)

    inside = [r for r in records if r.offset < reach < r.end]
    if inside:
        record = inside[0]
        if not record.complete and peer.close is not None and peer.close.frame < close.frame:
            return []  # the peer itself stopped inside it: truncated_record
        received = [end for end in record.segment_ends if end <= reach]
        confidence, why = view.confidence(closer, peer, [record])
        evidence = {
            "record_index": record.index, "record_type": type_name(record.type),
            "record_length": record.length, "record_offset": record.offset,
            "bytes_received": reach - record.offset,
            "bytes_total": 5 + record.length,
            "segments_received": len(received), "segments_total": len(record.frames),
            "header_split": record.header_split,
            "reaction_time": reaction, "close": reaction_kind,
            "record_first_frame": record.first_frame, "record_last_frame": record.last_frame,
            "rest_captured": record.complete,
        }
        if why:
            evidence["confidence_reason"] = why
        message = (f"{closer_role} closed ({close.kind.upper()}, frame {close.frame}) with "
                   f"{reach - record.offset} of {5 + record.length} bytes of {peer_role} record "
                   f"#{record.index} ({type_name(record.type)}) received, "
                   f"{len(received)}/{len(record.frames)} segments; {_ms(reaction)} after its last segment")
        return [Finding("close_inside_record", "high", confidence, closer_role, close.time,
                        close.frame, message, evidence)]

    pending = [r for r in records if r.offset >= reach]
    pending_data = [r for r in pending if not view.is_alert(peer, r)]
    if pending_data:
        first = pending_data[0]
        last_received = _last_received(records, reach)
        aligned = bool(_aligned(closer, records))
        pause = first.first_time - last_received.last_time if last_received else None
        post_handshake_only = (view.conn.last_application_data(closer) is None and
                               all(view.conn.is_post_handshake(peer, r) for r in pending_data))
        severity = "info" if post_handshake_only else "high"
        confidence, why = view.confidence(closer, peer, pending_data[:1])
        evidence = {
            "records_pending": len(pending_data),
            "bytes_pending": sum(5 + r.length for r in pending_data),
            "aligned": aligned,
            "reaction_time": reaction, "close": reaction_kind,
            "peer_pause": pause,
            "first_pending": {"index": first.index, "type": type_name(first.type),
                              "length": first.length, "frame": first.first_frame,
                              "time": first.first_time},
            "last_received": None if last_received is None else {
                "index": last_received.index, "type": type_name(last_received.type),
                "length": last_received.length, "frame": last_received.last_frame,
                "straddling": last_received.straddling},
            "post_handshake_only": post_handshake_only,
        }
        if why:
            evidence["confidence_reason"] = why
        what = "post-handshake records (session tickets)" if post_handshake_only else \
            f"{len(pending_data)} {peer_role} record(s), {evidence['bytes_pending']} bytes,"
        message = (f"{closer_role} closed ({close.kind.upper()}, frame {close.frame}) "
                   f"{_ms(reaction)} after a {peer_role} segment that ended "
                   f"{'on' if aligned else 'off'} a record boundary; {what} still to come "
                   f"(next record frame {first.first_frame}, {_ms(pause)} after the last)")
        return [Finding("close_before_pending_records", severity, confidence, closer_role,
                        close.time, close.frame, message, evidence)]

    # nothing pending: did the closer leave a peer that was not done?
    last_request = view.conn.last_application_data(closer)
    if last_request is not None and peer.close is not None and peer.close.kind == "rst" \
            and peer.close.frame > close.frame:
        last_answer = view.conn.last_application_data(peer)
        answered = last_answer is not None and last_answer.last_frame > last_request.last_frame
        peer_alert = view.alert_before(peer, peer.close.frame)
        if peer_alert is not None and last_answer is not None \
                and peer_alert.first_frame < last_answer.last_frame:
            peer_alert = None             # an alert before its last data closed nothing
        if answered and peer_alert is not None:
            return []  # it answered, then closed the TLS session itself: it had finished
        alert = view.alert_before(closer, close.frame)
        confidence, why = view.confidence(closer, peer)
        evidence = {"reaction_time": reaction, "close": reaction_kind,
                    "alert_first": alert is not None,
                    "peer_answered": answered,
                    "peer_alert_first": peer_alert is not None,
                    "peer_rst_frame": peer.close.frame}
        if why:
            evidence["confidence_reason"] = why
        message = (f"{closer_role} closed ({close.kind.upper()}, frame {close.frame}, {reaction_kind}, "
                   f"{_ms(reaction)} after the {peer_role}'s last segment) and the {peer_role} "
                   f"answered with RST (frame {peer.close.frame}): it had not finished"
                   + ("" if answered else "; its request was never answered"))
        return [Finding("close_before_peer_finished", "medium", confidence, closer_role,
                        close.time, close.frame, message, evidence)]
    return []


def _close_during_handshake(view, closer):
    close = closer.close
    role = view.role(closer)
    evidence = {"version": view.version, "records": {view.role(s): s.total for s in (view.client, view.server)},
                "handshake_messages": {view.role(s): sorted({tls.HANDSHAKE_TYPES.get(m, str(m))
                                                             for r in view.records(s) for m in r.messages})
                                       for s in (view.client, view.server)}}
    message = (f"{role} closed ({close.kind.upper()}, frame {close.frame}) before the TLS handshake "
               f"completed, without an alert")
    return Finding("close_during_handshake", "medium", "high", role, close.time, close.frame,
                   message, evidence)


# -- rules on each side ---------------------------------------------------------

def _side_rules(view, side, peer, closer, handshake_frame, handshake_known, during_handshake):
    found = []
    role, peer_role = view.role(side), view.role(peer)
    close = side.close
    tracker = side.tracker
    partial = tracker.partial if tracker is not None else None

    if partial is not None and partial.complete is False:
        stream = side.stream
        ended_at = close.offset if close is not None else None
        at_end = partial.offset + partial.received == stream.next and not partial.missing
        if close is not None and at_end and ended_at == stream.next:
            confidence = "high" if not stream.gaps else "medium"
            evidence = {"record_index": partial.index, "record_type": type_name(partial.type),
                        "record_length": partial.length, "bytes_sent": partial.received,
                        "bytes_missing": 5 + partial.length - partial.received,
                        "close_kind": close.kind}
            if stream.gaps:
                evidence["confidence_reason"] = f"{stream.gaps} capture gap(s) earlier in its stream"
            found.append(Finding(
                "truncated_record", "high", confidence, role, close.time, close.frame,
                f"{role} stopped mid-record: its record #{partial.index} ({type_name(partial.type)}) "
                f"announced {5 + partial.length} bytes, {partial.received} were sent before its "
                f"{close.kind.upper()} (frame {close.frame})", evidence))
        elif close is None and side.rst is None and peer.rst is None:
            last_frame = partial.last_frame
            found.append(Finding(
                "capture_ended_inside_record", "info", "high", role, partial.last_time or 0.0,
                last_frame,
                f"capture ends inside {role} record #{partial.index} ({partial.received} of "
                f"{5 + partial.length} bytes) with no close: nothing can be said",
                {"record_index": partial.index, "record_type": type_name(partial.type),
                 "record_length": partial.length, "bytes_seen": partial.received}))

    if close is None:
        return found

    # reset_on_data_after_close: data reached a side that had sent its FIN, which answered RST
    if close.kind == "fin" and side.rst is not None and side.rst[0] > close.frame:
        rst_frame = side.rst[0]
        # the bytes of each peer record that came in segments after the FIN, up to the RST
        after = []
        for r in view.records(peer):
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
        if arrived:
            only_alerts = all(view.is_alert(peer, r) for r in arrived)
            # a TLS 1.3 side that sent no application data lost only post-handshake
            # messages (session tickets), as in close_before_pending_records
            post_handshake = (not only_alerts and view.conn.last_application_data(side) is None
                              and all(view.is_alert(peer, r) or view.conn.is_post_handshake(peer, r)
                                      for r in arrived))
            lost = "alert" if only_alerts else "post_handshake" if post_handshake else "application_data"
            evidence = {"lost": lost, "records_lost": len(arrived),
                        "bytes_lost": sum(came for _, came, _ in after),
                        "fin_frame": close.frame, "rst_frame": rst_frame,
                        "first_lost_frame": min(first for _, _, first in after)}
            what = {"alert": "an alert", "post_handshake": "post-handshake messages, session tickets",
                    "application_data": "application data"}[lost]
            found.append(Finding(
                "reset_on_data_after_close", "medium" if lost == "application_data" else "info", "high",
                role, side.rst[1], rst_frame,
                f"{role} had sent its FIN (frame {close.frame}); {len(arrived)} {peer_role} record(s) "
                f"({what}) arrived after it and it answered RST (frame {rst_frame})"
                + (": that data was lost" if lost == "application_data" else ""),
                evidence))

    handshake_complete = handshake_frame is not None and close.frame >= handshake_frame
    if not during_handshake and (handshake_complete or not handshake_known):
        alert = view.alert_before(side, close.frame)
        if alert is None and side.total:
            evidence = {"close_kind": close.kind, "version": view.version}
            confidence = "high"
            if view.tls13:
                confidence = "medium"
                evidence["note"] = ("TLS 1.3 alerts are encrypted: no record of alert size "
                                    f"({tls.TLS13_ALERT_LENGTHS[0]} bytes) came just before the close")
            elif view.version is None:
                confidence = "medium"
                evidence["note"] = ("the handshake was not captured: if this is TLS 1.3, an encrypted "
                                    "alert would not show as one")
            found.append(Finding(
                "no_close_notify", "low", confidence, role, close.time, close.frame,
                f"{role} closed ({close.kind.upper()}, frame {close.frame}) without a TLS alert first",
                evidence))

    if close.kind == "rst":
        answered_peer_close = peer.close is not None and peer.close.frame < close.frame
        found.append(Finding(
            "abortive_close", "low", "high", role, close.time, close.frame,
            f"{role} reset the connection (RST, frame {close.frame})"
            + (f" in answer to the {peer_role}'s {peer.close.kind.upper()}" if answered_peer_close else ""),
            {"answered_peer_close": answered_peer_close}))

    if close.kind == "fin" and (peer.close is None or peer.close.frame > close.frame):
        found += _fast_close(view, side, peer)
    return found


def _fast_close(view, side, peer):
    close = side.close
    peer_segment = side.close_peer_segment
    after = peer_segment[0] if peer_segment else 0
    trailing = [r for r in view.records(side, complete_only=True)
                if after < r.last_frame <= close.frame]
    data = [r for r in trailing if not view.is_alert(side, r)]
    if not data:
        return []
    last = data[-1]
    gap = close.time - last.last_time
    same_segment = last.last_frame == close.frame
    if not same_segment and gap > BACK_TO_BACK:
        return []
    role = view.role(side)
    evidence = {"records": len(trailing), "same_segment": same_segment, "fin_after": gap,
                "last_record": {"index": last.index, "type": type_name(last.type), "frame": last.last_frame},
                "alert_before_fin": any(view.is_alert(side, r) for r in trailing)}
    how = "in the same segment" if same_segment else f"{_ms(gap)} later"
    return [Finding("fast_close_after_data", "info", "high", role, close.time, close.frame,
                    f"{role} sent its last record(s) and its FIN {how} (frame {close.frame})",
                    evidence)]
