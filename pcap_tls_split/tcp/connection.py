"""TCP segments of one connection -> its two side streams and their records.

Theory of operation
-------------------
A ``Connection`` has two ``Side``s, one per direction. ``Connection.packet``
takes each segment of the connection in capture order (the table finds the
connection): the sender's ``SideStream`` reassembles it, the sender's
``RecordTracker`` cuts the resulting bytes into records, what it acknowledges
of the peer's stream goes to the peer's ``SideStream``, and its first FIN or
RST is noted as a ``Close`` with its reach into the peer's stream. Every
state change of a side happens here or in the two objects it owns.

Each side keeps counters and the records a close can fall among: the ones
its peer has not acknowledged yet (in flight: bounded by the TCP window) and
the last two it has, at most ``RECENT_RECORDS``; once the first close has
happened, every record after it (the ones findings look at), up to
``KEPT_RECORDS``; its last ``RECENT_SEGMENTS`` data segments; its first and
last type-23 records (for ``tls.ApplicationData``); the alerts it sent in the
clear, up to ``KEPT_ALERTS``.

``segment_in_order`` is the same work as ``packet`` for the commonest segment
(no SYN, FIN or RST, the next bytes of its side in order, or none), taking the
payload where it lies in the capture's read buffer so that bytes inside a
record body are never copied; it says when the side may go on as a *run* of
such segments, which a packet loop then fuses and ends with ``end_run``.
"""

from typing import NamedTuple

from ..frame import ACK, FIN, RST, SYN, format_endpoint
from ..tls import appdata
from ..tls.appdata import HEAD as TYPE23_HEAD, TAIL as TYPE23_TAIL
from ..tls.wire import APPLICATION_DATA, HANDSHAKE
from ..tls.records import RecordTracker
from .reassembly import Data, SideStream

_tuple_new = tuple.__new__    # a NamedTuple from its fields, in a tuple (its __new__ is Python code)

RECENT_RECORDS = 1024
RECENT_SEGMENTS = 256
KEPT_RECORDS = 4096
KEPT_ALERTS = 64

RUN = 2     # segment_in_order: done, and its side may go on as a run
# Side.segments: frame, time, end of each data segment, flat in one list (a tuple of
# the three would take 64 bytes more a segment, and its allocation). It grows to twice
# RECENT_SEGMENTS and then drops the older half at once; only the last RECENT_SEGMENTS
# count.
SEGMENT = 3
KEPT_SEGMENTS = SEGMENT * RECENT_SEGMENTS


class SegmentEnd(NamedTuple):
    """A data segment of a side, as the close's position is told from (``Side.segments``
    keeps these fields flat, three items a segment; ``Side.recent_segments`` gives
    them as ``SegmentEnd``s)."""

    frame: int
    """Its frame number."""
    time: float
    """Its capture time."""
    end: int
    """The side-stream offset just past its last byte."""


class Mark(NamedTuple):
    """Where a packet of note was seen."""

    frame: int
    """Its frame number."""
    time: float
    """Its capture time."""


class Close:
    """A side's first FIN or RST."""

    __slots__ = ("kind", "frame", "time", "reach", "reach_estimated", "offset",
                 "peer_gaps", "peer_captured", "captured")

    def __init__(self, kind, frame, time, reach, reach_estimated, offset, peer_gaps, peer_captured,
                 captured):
        self.kind = kind                  # "fin" or "rst"
        self.frame = frame                # its frame number
        self.time = time                  # its capture time
        self.reach = reach                # offset into the peer's side stream it had received
        self.reach_estimated = reach_estimated  # no ACK on it: reach from the bytes captured
        self.offset = offset              # where in its own stream it closed
        self.peer_gaps = peer_gaps        # capture gaps in the peer's stream at that time
        self.peer_captured = peer_captured  # how far the peer's bytes captured by then reach
        self.captured = captured          # how far its own bytes captured by then reach


class Side:
    """What one side of a connection sent, as far as it matters downstream."""

    __slots__ = ("addr", "port", "stream", "tracker", "records", "total",
                 "straddling", "header_split", "coalesced", "type23_head",
                 "type23_tail", "finished", "alerts",
                 "close", "fin", "rst", "segments", "last_ack",
                 "close_peer_segment", "syn", "synack", "first_seq")

    def __init__(self, addr, port, bare=False):
        self.addr = addr              # packed address (4 or 16 bytes)
        self.port = port
        self.stream = None if bare else SideStream()  # its bytes, reassembled (bare: a Numbered one's)
        self.tracker = None           # RecordTracker of its bytes, made with the first ones
        # () until the first one comes, then plain lists trimmed to their bounds as they
        # grow (an empty deque takes 600 bytes, an empty list 56)
        self.records = ()             # the records a close can fall among
        self.total = self.straddling = self.header_split = self.coalesced = 0
        self.type23_head = ()         # its first type-23 records (TLS 1.3 handshake, first request)
        self.type23_tail = ()         # its last type-23 records, at most appdata.TAIL
        self.finished = None          # frame of its Finished (TLS up to 1.2)
        self.alerts = ()              # (level, description, frame) of the alerts it sent in the clear
        self.close = None             # Close of its first FIN or RST
        self.fin = None               # Mark of its first FIN
        self.rst = None               # Mark of its first RST
        self.segments = ()            # frame, time, end of its last data segments (SEGMENT above)
        self.close_peer_segment = None  # the peer's last SegmentEnd the closer had received
        self.last_ack = -1            # the last acknowledgment number it sent (-1: none yet)
        self.syn = False              # sent a SYN (without ACK)
        self.synack = False           # sent a SYN-ACK
        self.first_seq = -1           # Wireshark's base sequence of this direction (-1: not yet known)

    @property
    def endpoint(self):
        return format_endpoint(self.addr, self.port)

    def note_segment(self, frame, time, end):
        """One of its data segments (``end``: the stream offset past its last byte)."""
        segments = self.segments
        if not segments:
            segments = self.segments = []
        segments.append(frame)
        segments.append(time)
        segments.append(end)
        if len(segments) > 2 * KEPT_SEGMENTS:
            del segments[:-KEPT_SEGMENTS]

    def note_segments(self, frames, times, ends):
        """Several of its data segments, in order (a run)."""
        keep = max(0, len(frames) - RECENT_SEGMENTS)     # the others would fall out
        segments = self.segments
        if not segments:
            segments = self.segments = []
        for i in range(keep, len(frames)):
            segments.append(frames[i])
            segments.append(times[i])
            segments.append(ends[i])
        if len(segments) > 2 * KEPT_SEGMENTS:
            del segments[:-KEPT_SEGMENTS]

    def recent_segments(self):
        """Its last data segments, at most ``RECENT_SEGMENTS``, oldest first: a list of
        ``SegmentEnd``."""
        segments = self.segments
        return [_tuple_new(SegmentEnd, (segments[i], segments[i + 1], segments[i + 2]))
                for i in range(_first_kept(segments), len(segments), SEGMENT)]

    @property
    def partial(self):
        """The record its stream ended inside of (None: none)."""
        return self.tracker.partial if self.tracker is not None else None

    def counters(self):
        """Every count this side keeps, by name (for tests and diagnostics)."""
        stream, tracker = self.stream, self.tracker
        facts = {name: getattr(stream, name) for name in (
            "next", "last_end", "segments", "retransmissions", "out_of_order", "conflicts",
            "gaps", "gap_bytes", "keepalives", "snap_cut", "before_start", "held_bytes",
            "peer_acked", "fin", "rst", "midstream")}
        facts.update(total=self.total, straddling=self.straddling, header_split=self.header_split,
                     coalesced=self.coalesced, last_ack=None if self.last_ack < 0 else self.last_ack,
                     fin_mark=self.fin, rst_mark=self.rst, segments_kept=self.recent_segments(),
                     records_kept=list(self.records), type23_head=list(self.type23_head),
                     type23_tail=list(self.type23_tail), finished=self.finished,
                     alerts=list(self.alerts))
        if tracker is not None:
            facts.update(tracker=tracker.counters())
        return facts


def _first_kept(segments):
    """Where in ``Side.segments`` the last ``RECENT_SEGMENTS`` begin."""
    return max(0, len(segments) - KEPT_SEGMENTS)


def _last_received(segments, reach):
    """The ``SegmentEnd`` of the last of these segments (``Side.segments``) wholly
    received at ``reach`` (the close's ACK): captured at the peer or on the path, later
    segments may be in flight."""
    for i in range(len(segments) - SEGMENT, _first_kept(segments) - 1, -SEGMENT):
        if segments[i + 2] <= reach:
            return _tuple_new(SegmentEnd, (segments[i], segments[i + 1], segments[i + 2]))
    return None


class Connection:
    """One TCP connection: two sides and when it started and ended."""

    __slots__ = ("stream", "a", "b", "start", "last", "ended_at", "closing",
                 "midstream", "end_reason", "_client", "on_record", "syn_time", "rtt",
                 "continued", "quoted", "socks", "synack_time")
    foreign = False     # a Numbered one: analysed by another worker

    def __init__(self, stream, a, b, time, on_record=None, midstream=False):
        self.stream = stream
        self.a = a                    # the side that sent the first packet seen
        self.b = b
        self.start = time
        self.last = time
        self.ended_at = None          # capture time both FINs or a RST were seen
        self.closing = False          # a side has closed: keep every record from now on
        self.midstream = midstream
        self.end_reason = None
        self.continued = False        # the rest of a connection ended by the idle timeout
        self._client = None
        self.on_record = on_record
        self.syn_time = None          # capture time of the first SYN
        self.synack_time = None       # capture time of the first SYN-ACK
        self.rtt = None               # SYN to the ACK of the SYN-ACK: one round trip
        self.quoted = False           # opened by a TCP header an ICMP error quoted: no packet yet
        self.socks = None             # SocksWatch while a SOCKS handshake may spend a stream number

    @property
    def half_open(self):
        """Not ended, and no SYN-ACK nor payload byte seen yet, in order or not (a
        flood's connections): every segment with payload is in a side's ``segments``."""
        a, b = self.a, self.b
        return (self.ended_at is None and not a.segments and not b.segments
                and not a.synack and not b.synack)

    # -- roles ----------------------------------------------------------------

    @property
    def client(self):
        """The client: SYN sender; else the ClientHello sender; else the higher port."""
        if self._client is not None:
            return self._client
        a, b = self.a, self.b
        if a.syn and not b.syn:
            return a
        if b.syn and not a.syn:
            return b
        if a.synack and not b.synack:
            return b
        if b.synack and not a.synack:
            return a
        for side, other in ((a, b), (b, a)):
            if side.tracker and side.tracker.client_hello and not (other.tracker and other.tracker.client_hello):
                return side
        return a if a.port > b.port else b

    @property
    def role_inferred(self):
        if self.continued:
            return False
        a, b = self.a, self.b
        if a.syn or b.syn or a.synack or b.synack:
            return False
        return not any(s.tracker and s.tracker.client_hello for s in (a, b))

    def fix_roles(self, client=None):
        """Decide the roles once (records already reported name them); ``client``:
        the client's (address, port) when known from before."""
        if client is not None:
            self._client = self.a if (self.a.addr, self.a.port) == client else self.b
        elif self._client is None:
            self._client = self.client

    @property
    def server(self):
        return self.b if self.client is self.a else self.a

    def role(self, side):
        return "client" if side is self.client else "server"

    def peer(self, side):
        return self.b if side is self.a else self.a

    @property
    def version(self):
        """The negotiated version from the ServerHello (wire value), if seen."""
        for side in (self.a, self.b):
            if side.tracker and side.tracker.server_version:
                return side.tracker.server_version
        return None

    @property
    def is_tls(self):
        trackers = [s.tracker for s in (self.a, self.b) if s.tracker is not None]
        if any(t.tunnelled and not t.sslv2_hello for t in trackers):
            return False
        return any(t.tls_start is not None or t.sslv2_hello for t in trackers)

    def application_data(self):
        """The application-data rules (``tls.ApplicationData``) of the finished connection."""
        return appdata.ApplicationData(self.version, self.client.type23_head)

    # -- packets --------------------------------------------------------------

    def first_packet(self, time, flags):
        """The first packet of a connection an ICMP error had named before."""
        self.quoted = False
        self.start = time
        self.midstream = not flags & SYN

    def packet(self, side, peer, frame, time, seq, ack, flags, payload, missing):
        """A segment ``side`` sent (``peer`` is the other side)."""
        self.last = time
        if flags & SYN and self.ended_at is not None:
            self.ended_at = None      # its handshake tried again: not over
        if self.rtt is None:
            if flags & SYN:
                if not flags & ACK and self.syn_time is None:
                    self.syn_time = time
                elif flags & ACK and self.synack_time is None:
                    self.synack_time = time
            elif self.syn_time is not None and side.syn and flags & ACK:
                self.rtt = time - self.syn_time
        stream = side.stream
        offset = None
        if payload and not missing and not flags & (SYN | FIN | RST):
            offset = stream.take(seq, len(payload))     # the next bytes, in order
        if offset is not None:
            self._data(side, offset, payload, frame, time)
        else:
            events = stream.segment(seq, flags, payload, frame, time, missing)
            if events:
                self.consume(side, events)
        if payload:
            side.note_segment(frame, time, stream.last_end)
        if flags & ACK and ack != side.last_ack and peer.stream.base is not None:
            self._acked(side, peer, ack)
        if flags & (FIN | RST):
            self._closed(side, peer, frame, time, flags, ack)

    def segment_in_order(self, side, peer, buf, start, size, seq, ack, flags, frame, time):
        """``packet`` for a segment without SYN, FIN or RST, wholly captured, whose
        ``size`` payload bytes lie at ``buf[start:]``, when it continues its side in
        order (or carries no payload). False (nothing done) for any other segment;
        ``RUN`` when it carried data, left its side in the middle of a record body
        and acknowledged as before: the side's next segments may go on as a run
        (``end_run``); else True."""
        stream = side.stream
        if stream.base is None:       # (then its first sequence number is known too)
            return False
        if size:
            offset = stream.take(seq, size)
            if offset is None:
                return False
        self.last = time
        if self.rtt is None and self.syn_time is not None and side.syn and flags & ACK:
            self.rtt = time - self.syn_time
        tracker = side.tracker
        if size:
            if tracker is not None and size < tracker.in_body(offset):
                tracker.skip_body(offset, size, frame, time)   # the bytes are not needed
            else:
                self._data(side, offset, buf[start:start + size], frame, time)
            side.note_segment(frame, time, stream.next)
        if flags & ACK and ack != side.last_ack and peer.stream.base is not None:
            self._acked(side, peer, ack)
        if size and flags & ACK and side.last_ack == ack and tracker is not None \
                and tracker.in_body(stream.next) and not stream.held:
            return RUN
        return True

    def end_run(self, side, frames, ends, times, left):
        """A packet loop took more segments of ``side`` in a run (after ``RUN``), each
        the next bytes in order inside the same record body and acknowledging as
        the segment that began the run: their ``frames``, stream ``ends`` and
        capture ``times`` (not empty), and the record's body bytes ``left``."""
        end, time = ends[-1], times[-1]
        self.last = time
        side.stream.end_run(end, len(frames))
        side.tracker.end_body_run(frames, ends, end, left, time)
        side.note_segments(frames, times, ends)

    def _acked(self, side, peer, ack):
        side.last_ack = ack  # a bulk sender repeats the same ACK: look at it once
        events = peer.stream.acked(ack)
        if events:
            self.consume(peer, events)

    def _closed(self, side, peer, frame, time, flags, ack):
        if side.close is None:
            kind = "rst" if flags & RST else "fin"
            if flags & ACK and peer.stream.base is not None:
                reach, estimated = peer.stream.offset(ack), False
            else:
                reach, estimated = peer.stream.next, True
            own = side.stream.fin if kind == "fin" else side.stream.rst
            side.close = Close(kind, frame, time, reach, estimated, own, peer.stream.gaps,
                               peer.stream.captured_end(), side.stream.captured_end())
            side.close_peer_segment = _last_received(peer.segments, reach)
            self.closing = True
        self._marked(side, peer, frame, time, flags)

    def _marked(self, side, peer, frame, time, flags):
        """A FIN or RST of ``side``: its first of each marked, and when the connection
        ended (at a RST, or at the FIN that follows the peer's)."""
        if flags & RST:
            if side.rst is None:
                side.rst = _tuple_new(Mark, (frame, time))
            self.ended_at = time
        elif side.fin is None:
            side.fin = _tuple_new(Mark, (frame, time))
            if peer.fin is not None and self.ended_at is None:
                self.ended_at = time

    def _data(self, side, offset, payload, frame, time):
        """The next bytes of ``side``'s stream, in order, to its record tracker."""
        tracker = side.tracker
        if tracker is None:
            self.consume(side, (_tuple_new(Data, (offset, payload, frame, time)),))
            return
        for record in tracker.data(offset, payload, frame, time):
            self._record(side, record)

    def consume(self, side, events):
        """Reassembly events (``Data``, ``Gap``) of ``side``'s stream, to its record tracker."""
        tracker = side.tracker
        if tracker is None:
            tracker = side.tracker = RecordTracker(midstream=side.stream.midstream)
        for event in events:
            if type(event) is Data:
                records = tracker.data(event.offset, event.payload, event.frame, event.time)
            else:
                records = tracker.gap(event.offset, event.length)
            for record in records:
                self._record(side, record)

    def _record(self, side, record):
        side.total += 1
        if len(record.frames) > 1:
            side.straddling += 1
        if record.header_frames > 1:
            side.header_split += 1
        if record.coalesced:
            side.coalesced += 1
        records = side.records
        if not records:
            records = side.records = []
        if not self.closing:
            records.append(record)
            if len(records) > RECENT_RECORDS:
                del records[0]
            acked = side.stream.peer_acked
            if acked is not None and len(records) > 3 and records[2].end <= acked:
                drop = 1               # acknowledged: no close can fall before them
                while len(records) - drop > 3 and records[drop + 2].end <= acked:
                    drop += 1
                del records[:drop]
        elif len(records) < KEPT_RECORDS:
            records.append(record)
        content_type = record.type
        if content_type == APPLICATION_DATA:
            if len(side.type23_head) < TYPE23_HEAD:
                if not side.type23_head:
                    side.type23_head = []
                side.type23_head.append(record)
            tail = side.type23_tail
            if not tail:
                tail = side.type23_tail = []
            tail.append(record)
            if len(tail) > TYPE23_TAIL:
                del tail[0]
        elif content_type == HANDSHAKE and side.finished is None and side.tracker.ccs_seen \
                and not record.messages:
            side.finished = record.last_frame
        elif record.alert is not None and len(side.alerts) < KEPT_ALERTS:
            if not side.alerts:
                side.alerts = []
            side.alerts.append(record.alert + (record.last_frame,))
        if self.on_record is not None:
            self.fix_roles()
            self.on_record(self, side, record)

    def finish(self):
        """End of the connection: release what the reassemblers hold."""
        for side in (self.a, self.b):
            events = side.stream.finish()
            if events:
                self.consume(side, events)
            if side.tracker is not None:
                for record in side.tracker.end():
                    self._record(side, record)
        self.fix_roles()


class Numbered(Connection):
    """A connection another worker analyses (``ConnectionTable(share=...)``): only
    what the table's numbering, bounds and end order need of it, the same as a
    ``Connection`` keeps (its sides' first sequence numbers, SYN and SYN-ACK, when
    it ended, its last packet), none of its bytes: its sides are bare (no stream)."""

    __slots__ = ("payload_seen",)   # (bare sides keep no segments to tell it)
    foreign = True

    def __init__(self, stream, a, b, time, on_record=None, midstream=False):
        super().__init__(stream, a, b, time, on_record, midstream)
        self.payload_seen = False

    @property
    def half_open(self):
        return (self.ended_at is None and not self.payload_seen
                and not self.a.synack and not self.b.synack)

    def packet(self, side, peer, frame, time, seq, ack, flags, payload, missing):
        self.last = time
        if flags & SYN and self.ended_at is not None:
            self.ended_at = None
        if payload:
            self.payload_seen = True
        if flags & (FIN | RST):
            self._marked(side, peer, frame, time, flags)   # (ended as a Connection would be)

    def segment_in_order(self, side, peer, buf, start, size, seq, ack, flags, frame, time):
        if side.first_seq < 0:
            return False              # the table notes its first sequence number first
        self.last = time
        if size:
            self.payload_seen = True
        return True

    def finish(self):
        self.fix_roles()
