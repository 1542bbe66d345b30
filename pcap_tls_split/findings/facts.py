"""The facts of one finished connection that the rules and the report read, computed once.

The words follow SIGNATURES.md: the *first closer* closed first, its *reach*
is how far into the peer's side stream it had received, the *reaction time*
runs from the peer's last segment before the close to the close.
"""

from ..tls import wire

# A close this long after the peer's last segment (and longer than a few
# round trips) is an idle or timeout close, not a reaction to that data.
REACTION_FLOOR = 0.100
REACTION_RTTS = 4


def type_name(content_type):
    """A record content type by its name (``application_data``...)."""
    return wire.CONTENT_TYPES.get(content_type, str(content_type))


def first_closer(conn):
    """The side whose close came first (and so answered no close of the peer)."""
    closes = [s for s in (conn.a, conn.b) if s.close is not None]
    if not closes:
        return None
    return min(closes, key=lambda s: s.close.frame)


def reach_of(closer, peer):
    """The first closer's reach into the peer's stream (its ACK of the peer's FIN not counted)."""
    reach = closer.close.reach
    if peer.stream.fin is not None and reach > peer.stream.fin:
        reach = peer.stream.fin
    return reach


def records_of(side, complete_only=False):
    """The side's kept records in stream order, its incomplete last one too."""
    kept = list(side.records)
    partial = side.partial
    if partial is not None and not complete_only:
        kept.append(partial)
    return kept


def last_received(records, reach):
    """The last complete record wholly within ``reach`` (None: none)."""
    before = [r for r in records if r.complete and r.end <= reach]
    return before[-1] if before else None


def ends_on_boundary(closer, records):
    """Whether the last peer segment the closer had received ended on a boundary of
    one of ``records`` (None: it had received none)."""
    segment = closer.close_peer_segment
    if segment is None:
        return None
    return any(segment.end in (r.offset, r.end) for r in records)


class Facts:
    """What the rules of one finished TLS connection read, each computed once."""

    def __init__(self, conn):
        self.conn = conn
        self.client = conn.client
        self.server = conn.server
        self.version = wire.version_name(conn.version)
        self.tls13 = self.version == "1.3"
        self.rtt = conn.rtt
        self.app = conn.application_data()
        self.closer = first_closer(conn)
        """The first closer (None: neither side closed)."""
        self.peer = conn.peer(self.closer) if self.closer is not None else None
        self.reach = reach_of(self.closer, self.peer) if self.closer is not None else None
        self.handshake_frame = self._handshake_done_frame()
        """Frame at which the TLS handshake was complete (None: it never was)."""
        self.handshake_known = self._handshake_started()
        self.closed_during_handshake = None
        """The first closer when it closed before the handshake completed, without an alert."""
        if self.closer is not None and self.handshake_known \
                and (self.handshake_frame is None or self.closer.close.frame < self.handshake_frame) \
                and self.alert_before(self.closer, self.closer.close.frame) is None:
            self.closed_during_handshake = self.closer

    def role(self, side):
        return self.conn.role(side)

    def from_client(self, side):
        return side is self.client

    # -- the close against the peer's records ---------------------------------

    def position(self):
        """Where the first close fell against the peer's records and segments:
        ``(aligned, last_record_straddled)``: whether the last peer segment
        received before the close ended exactly on a record boundary, and whether
        the last peer record wholly received before it straddled segments; None
        for what cannot be said (no close, no peer records)."""
        if self.closer is None:
            return None, None
        records = list(self.peer.records)
        if not records:
            return None, None
        received = last_received(records, self.reach)
        return ends_on_boundary(self.closer, records), None if received is None else received.straddling

    # -- application data (tls.ApplicationData, by side) -----------------------

    def last_application_data(self, side):
        """The side's last application data record (None if it sent none)."""
        return self.app.last(side is self.client, side.type23_tail)

    def is_post_handshake(self, side, record):
        return self.app.is_post_handshake(side is self.client, record)

    # -- alerts ----------------------------------------------------------------

    def is_alert(self, side, record):
        """An alert record; in TLS 1.3 an encrypted one of alert size counts too."""
        if record.type == wire.ALERT:
            return True
        # 19 bytes cannot be a Finished or any other handshake message of TLS 1.3
        return (self.tls13 and record.type == wire.APPLICATION_DATA and record.complete
                and record.length in wire.TLS13_ALERT_LENGTHS)

    def alert_before(self, side, frame):
        """The alert record the side sent last before ``frame``, if any."""
        before = [r for r in records_of(side, complete_only=True) if r.last_frame <= frame]
        if not before:
            return None
        if self.tls13:
            last = before[-1]
            return last if self.is_alert(side, last) else None
        alerts = [r for r in before if r.type == wire.ALERT]
        return alerts[-1] if alerts else None

    # -- the handshake ----------------------------------------------------------

    def _handshake_started(self):
        """A ClientHello was seen (a pure SSLv2 connection has no TLS handshake to follow)."""
        trackers = [s.tracker for s in (self.client, self.server) if s.tracker is not None]
        if any(t.sslv2_hello == 0x0002 for t in trackers):
            return False
        return any(t.client_hello for t in trackers)

    def _handshake_done_frame(self):
        client, server = self.client, self.server
        if self.tls13:
            finished = self.app.client_finished
            if finished is not None and server.type23_head:
                return finished.last_frame
            return None
        if client.finished is not None and server.finished is not None:
            return max(client.finished, server.finished)
        if client.type23_head and server.type23_head and self.version is not None:
            return 0  # application data flowed both ways: it was complete
        return None

    # -- timing and confidence --------------------------------------------------

    def reaction(self, side):
        """(reaction time, kind) of the side's close to the peer's last segment before it."""
        segment = side.close_peer_segment
        if segment is None:
            return None, "no peer data"
        seconds = side.close.time - segment.time
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
