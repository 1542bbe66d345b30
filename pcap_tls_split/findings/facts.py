"""The facts of one finished connection that the rules and the report read, computed once.

The words follow SIGNATURES.md: the *first closer* closed first, its *reach*
is how far into the peer's side stream it had received, the *reaction time*
runs from the peer's last segment before the close to the close.
"""

from ..tls import appdata, wire
from ..tls.wire import (ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, CLIENT_HELLO, CONTENT_TYPES, HANDSHAKE,
                        SSLV2, TLS13_ALERT_LENGTHS, TLS13_FINISHED_LENGTHS)

# A close this long after the peer's last segment (and longer than a few
# round trips) is an idle or timeout close, not a reaction to that data.
REACTION_FLOOR = 0.100
REACTION_RTTS = 4
# Peer farewell (SIGNATURES.md): its first record at most one answer delay plus
# this after the closer's goodbye; a new flight at least half an answer delay and
# this long after the peer's previous record; its close within this of its last record.
FAREWELL_SLACK = 0.005
FAREWELL_NEW_FLIGHT = 0.010
# An alert the capture missed is this many bytes (TLS 1.2 and 1.3 suites)
UNSEEN_ALERT = (7, 31)
appdata_head_half = appdata.HEAD // 2   # where a TLS 1.3 Finished can be among a side's first type-23 records
_UNSET = object()       # (Facts.inside not yet looked for)


def type_name(content_type):
    """A record content type by its name (``application_data``...)."""
    return CONTENT_TYPES.get(content_type, str(content_type))


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


def _finished_then_data(side):
    """The frame of the side's Finished when it sent a type-23 record after it (None: not
    so): its encrypted handshake record after change_cipher_spec, or (TLS 1.3, where the
    version may not be known from one side) its first type-23 record of Finished size."""
    head = side.type23_head
    if side.finished is not None:
        return side.finished if any(r.first_frame > side.finished for r in head) else None
    for i, record in enumerate(head[:appdata_head_half]):
        if record.length in TLS13_FINISHED_LENGTHS and len(head) > i + 1:
            return record.last_frame
    return None


class Facts:
    """What the rules of one finished TLS connection read, each computed once."""

    def __init__(self, conn):
        self.conn = conn
        self._kept = {}               # (side, complete_only) -> its records_of, made once
        self._inside = _UNSET
        self.client = conn.client
        self.server = conn.server
        self.version = wire.version_name(conn.version)
        self.tls13 = self.version == "1.3"
        self.maybe_tls13 = self.tls13 or self.version is None   # the handshake not captured
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

    def records(self, side, complete_only=False):
        """``records_of(side, complete_only)``, made once (the rules read it many
        times; the connection is finished): a tuple."""
        key = (side, complete_only)
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = tuple(records_of(side, complete_only))
        return kept

    @property
    def inside(self):
        """The peer record the first closer's reach falls strictly inside (None: none,
        or no close)."""
        if self._inside is _UNSET:
            reach = self.reach
            self._inside = None if self.closer is None else next(
                (r for r in self.records(self.peer) if r.offset < reach < r.end), None)
        return self._inside

    def peer_of(self, side):
        return self.conn.peer(side)

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
        records = self.peer.records
        if not records:
            return None, None
        received = last_received(records, self.reach)
        return ends_on_boundary(self.closer, records), None if received is None else received.straddling

    # -- application data (tls.ApplicationData, by side) -----------------------

    def last_application_data(self, side):
        """The side's last application data record (None if it sent none)."""
        return self.app.last(side is self.client, side.type23_tail)

    def sent_application_data(self, side):
        """The side sent application data at all."""
        from_client = side is self.client
        return any(self.app.is_application_data(from_client, r) for r in side.type23_head) or \
            self.last_application_data(side) is not None

    def is_post_handshake(self, side, record):
        return self.app.is_post_handshake(side is self.client, record)

    def is_handshake(self, side, record):
        """A record of the side's handshake: handshake and change_cipher_spec records, an
        SSLv2-format hello, and in TLS 1.3 its encrypted handshake flight (type 23,
        neither application data nor post-handshake)."""
        kind = record.type
        if kind in (HANDSHAKE, CHANGE_CIPHER_SPEC, SSLV2):
            return True
        from_client = side is self.client
        return (self.tls13 and kind == APPLICATION_DATA and not self.is_alert(side, record)
                and not self.app.is_application_data(from_client, record)
                and not self.app.is_post_handshake(from_client, record))

    # -- the peer's answer to a close (SIGNATURES.md "Answer delay", "Peer farewell") --

    def answer_delay(self, closer):
        """How long the peer takes to answer a packet of the closer, measured on the
        handshake (None: not measurable, as on a capture that starts mid-stream)."""
        conn = self.conn
        peer = self.peer_of(closer)
        if closer is self.client:
            if conn.syn_time is not None and conn.synack_time is not None and closer.syn:
                return conn.synack_time - conn.syn_time
            hello = next((r for r in self.records(closer) if CLIENT_HELLO in r.messages), None)
            if hello is None or conn.midstream:
                return None
            answer = next((r for r in self.records(peer) if r.first_time >= hello.last_time), None)
            return None if answer is None else answer.first_time - hello.last_time
        if conn.midstream and not closer.synack:
            return None
        mine, theirs = self.records(closer), self.records(peer)
        if not mine:
            return None
        start = mine[0].first_time
        answer = next((r for r in theirs if r.first_time > start), None)
        if answer is None:
            return None
        flight = [r for r in mine if r.last_time <= answer.first_time]
        return answer.first_time - flight[-1].last_time if flight else None

    def is_farewell(self, closer, records):
        """Whether ``records`` (the peer's, beyond the closer's reach, not alerts) are a
        peer farewell: what the peer sent in answer to the close itself."""
        if not records:
            return False
        delay = self.answer_delay(closer)
        if delay is None:
            return False
        peer = self.peer_of(closer)
        alert = self.alert_before(closer, closer.close.frame)
        goodbye = alert.first_time if alert is not None else closer.close.time
        first, last = records[0], records[-1]
        if not goodbye <= first.first_time <= goodbye + delay + FAREWELL_SLACK:
            return False
        before = [r for r in self.records(peer) if r.index < first.index]
        if before and first.first_time - before[-1].last_time < max(delay / 2, FAREWELL_NEW_FLIGHT):
            return False            # the tail of what the closer was reading
        after = [r for r in self.records(peer) if r.index > last.index]
        if any(not self.is_alert(peer, r) for r in after):
            return False
        if after and after[0].first_time - last.last_time <= FAREWELL_SLACK:
            return True             # its close_notify follows
        fin = peer.fin
        return fin is not None and (fin.frame == last.last_frame
                                    or 0 <= fin.time - last.last_time <= FAREWELL_SLACK)

    # -- alerts ----------------------------------------------------------------

    def is_alert(self, side, record):
        """An alert record; in TLS 1.3 (or where the version was not captured) an
        encrypted one of alert size counts too."""
        if record.type == ALERT:
            return True
        # 19 bytes cannot be a Finished or any other handshake message of TLS 1.3
        return (self.maybe_tls13 and record.type == APPLICATION_DATA and record.complete
                and record.length in TLS13_ALERT_LENGTHS)

    def alert_before(self, side, frame):
        """The alert record the side sent last before ``frame``, if any."""
        before = [r for r in self.records(side, True) if r.last_frame <= frame]
        if not before:
            return None
        if self.tls13:
            last = before[-1]
            return last if self.is_alert(side, last) else None
        alerts = [r for r in before if r.type == ALERT]
        if alerts:
            return alerts[-1]
        last = before[-1]             # the version unknown: TLS 1.3's alert-size rule may apply
        return last if self.version is None and self.is_alert(side, last) else None

    # -- the handshake ----------------------------------------------------------

    def _handshake_started(self):
        """A ClientHello was seen (a pure SSLv2 connection has no TLS handshake to follow)."""
        trackers = [s.tracker for s in (self.client, self.server) if s.tracker is not None]
        if any(t.sslv2_hello == 0x0002 for t in trackers):
            return False
        return any(t.client_hello for t in trackers)

    def _handshake_done_frame(self):
        client, server = self.client, self.server
        seen = [side for side in (client, server) if side.stream.base is not None]
        if len(seen) == 1:
            # a one-sided capture: the side we see completed it if it sent application
            # data after its own Finished
            return _finished_then_data(seen[0])
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
        close = side.close
        if not close.reach_estimated and close.reach > close.peer_captured:
            reasons.append(f"the {self.role(side)}'s acknowledgment covers {close.reach - close.peer_captured} "
                           f"bytes of the {self.role(peer)}'s the capture does not hold (a frame missing "
                           "just before the close)")
            level = "low" if level == "low" else "medium"
        gaps = side.close.peer_gaps  # the holes in the peer's stream before this close
        if gaps:
            reasons.append(f"{gaps} capture gap(s) in the {self.role(peer)}'s stream before the close")
            level = "low" if level == "low" else "medium"
        if side.close.reach_estimated:
            reasons.append("the close carried no acknowledgment: reach estimated from the bytes captured before it")
            level = "low" if level == "low" else "medium"
        return level, "; ".join(reasons)

    def unseen_by_peer(self, side):
        """Bytes the side sent before its close that its peer acknowledged and the
        capture does not hold (0: none); an alert the capture missed is 7 to 31 bytes."""
        close, acked = side.close, side.stream.peer_acked
        if close is None or acked is None or close.offset is None:
            return 0
        return max(0, min(acked, close.offset) - close.captured)
