"""TCP segments -> connections: the connection table.

Theory of operation
-------------------
``ConnectionTable.packet`` takes each decoded TCP segment in capture order,
finds its connection by 4-tuple (numbering connections as Wireshark's
``tcp.stream`` does: in order of first packet; a SYN whose sequence number
differs from the one its direction started with opens a new connection on
the same 4-tuple), and hands it to that connection's two ``Side``s: the
side's ``SideStream`` reassembles it, the side's ``RecordTracker`` cuts the
resulting bytes into records, and the connection notes closes (first FIN or
RST of each side, with its reach into the peer's stream) as they happen.

A connection ends (its state is freed and ``on_connection`` is called) when,
after both FINs or a RST, ``linger`` seconds of capture time pass; when it
has been idle for ``idle_timeout`` seconds; when a new SYN reuses its
4-tuple; or at the end of the capture. A small tombstone keeps the stream
number of an ended connection so that late packets do not renumber the
streams after it.

Each side keeps counters and the records a close can fall among: the ones
its peer has not acknowledged yet (in flight: bounded by the TCP window) and
the last two it has, at most ``RECENT_RECORDS``; once the first close has
happened, every record after it (the ones findings look at), up to
``KEPT_RECORDS``.
"""

import struct
from collections import deque

from .frame import format_endpoint
from .reassembly import ACK, DATA, FIN, RST, SYN, SideStream
from .records import RecordTracker
from . import tls

_PORTS = struct.Struct(">HH").pack

RECENT_RECORDS = 1024
RECENT_SEGMENTS = 256
TYPE23_HEAD = 8
KEPT_RECORDS = 4096
LINGER = 2.0
IDLE_TIMEOUT = 600.0
SWEEP_EVERY = 8192  # packets between sweeps for idle and ended connections...
SWEEP_SECONDS = 1.0  # ...or seconds of capture time, whichever comes first


class Side:
    """What one side of a connection sent, as far as it matters downstream."""

    __slots__ = ("addr", "port", "stream", "tracker", "records", "total",
                 "straddling", "header_split", "coalesced", "type23_head",
                 "type23_tail", "finished",
                 "close", "fin", "rst", "segments", "last_ack",
                 "close_peer_segment", "syn", "synack", "first_seq")

    def __init__(self, addr, port):
        self.addr = addr
        self.port = port
        self.stream = SideStream()
        self.tracker = None
        self.records = deque(maxlen=RECENT_RECORDS)
        self.total = self.straddling = self.header_split = self.coalesced = 0
        self.type23_head = []         # its first type-23 records (TLS 1.3 handshake, first request)
        self.type23_tail = deque(maxlen=4)  # its last type-23 records
        self.finished = None          # frame of its Finished (TLS up to 1.2)
        self.close = None             # Close of its first FIN or RST
        self.fin = None               # (frame, time) of its first FIN
        self.rst = None               # (frame, time) of its first RST
        self.segments = deque(maxlen=RECENT_SEGMENTS)  # (frame, time, end offset) of its last data segments
        self.close_peer_segment = None  # the peer's last data segment the closer had received
        self.last_ack = None          # the last acknowledgment number it sent
        self.syn = False              # sent a SYN (without ACK)
        self.synack = False           # sent a SYN-ACK
        self.first_seq = None         # Wireshark's base sequence of this direction

    @property
    def endpoint(self):
        return format_endpoint(self.addr, self.port)


def _last_received(segments, reach):
    """The last of these segments wholly received at ``reach`` (the close's ACK):
    captured at the peer or on the path, later segments may be in flight."""
    for segment in reversed(segments):
        if segment[2] <= reach:
            return segment
    return None


class Close:
    """A side's first FIN or RST."""

    __slots__ = ("kind", "frame", "time", "reach", "reach_estimated", "offset",
                 "peer_gaps")

    def __init__(self, kind, frame, time, reach, reach_estimated, offset, peer_gaps):
        self.kind = kind                  # "fin" or "rst"
        self.frame = frame
        self.time = time
        self.reach = reach                # offset into the peer's side stream it had received
        self.reach_estimated = reach_estimated
        self.offset = offset              # where in its own stream it closed
        self.peer_gaps = peer_gaps        # capture gaps in the peer's stream at that time


class Connection:
    """One TCP connection: two sides and when it started and ended."""

    __slots__ = ("stream", "a", "b", "start", "last", "ended_at", "closing",
                 "midstream", "end_reason", "_client", "on_record", "syn_time", "rtt",
                 "continued")

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
        self.rtt = None               # SYN to the ACK of the SYN-ACK: one round trip

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

    # -- packets --------------------------------------------------------------

    def packet(self, side, peer, frame, time, seq, ack, flags, payload, missing):
        self.last = time
        if self.rtt is None:
            if flags & SYN:
                if not flags & ACK and self.syn_time is None:
                    self.syn_time = time
            elif self.syn_time is not None and side.syn and flags & ACK:
                self.rtt = time - self.syn_time
        stream = side.stream
        events = stream.segment(seq, flags, payload, frame, time, missing)
        if events:
            tracker = side.tracker
            if tracker is not None and len(events) == 1 and events[0][0] == DATA:
                event = events[0]
                for record in tracker.data(event[1], event[2], event[3], event[4]):
                    self._record(side, record)
            else:
                self._consume(side, events)
        if payload:
            side.segments.append((frame, time, stream.last_end))
        if flags & ACK and ack != side.last_ack and peer.stream.base is not None:
            side.last_ack = ack  # a bulk sender repeats the same ACK: look at it once
            events = peer.stream.acked(ack)
            if events:
                self._consume(peer, events)
        if flags & (FIN | RST):
            self._closed(side, peer, frame, time, flags, ack)

    def _closed(self, side, peer, frame, time, flags, ack):
        kind = "rst" if flags & RST else "fin"
        if side.close is None:
            if flags & ACK and peer.stream.base is not None:
                reach, estimated = peer.stream.offset(ack), False
            else:
                reach, estimated = peer.stream.next, True
            own = side.stream.fin if kind == "fin" else side.stream.rst
            side.close = Close(kind, frame, time, reach, estimated, own, peer.stream.gaps)
            side.close_peer_segment = _last_received(peer.segments, reach)
            if not self.closing:
                self.closing = True
                for s in (self.a, self.b):
                    s.records = list(s.records)
        if kind == "rst":
            if side.rst is None:
                side.rst = (frame, time)
            self.ended_at = time
        elif side.fin is None:
            side.fin = (frame, time)
            if peer.fin is not None and self.ended_at is None:
                self.ended_at = time

    def _consume(self, side, events):
        tracker = side.tracker
        if tracker is None:
            tracker = side.tracker = RecordTracker(midstream=side.stream.midstream)
        for event in events:
            if event[0] == DATA:
                records = tracker.data(event[1], event[2], event[3], event[4])
            else:
                records = tracker.gap(event[1], event[2])
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
        if not self.closing:
            records.append(record)
            acked = side.stream.peer_acked
            if acked is not None:
                while len(records) > 3 and records[2].end <= acked:
                    records.popleft()  # acknowledged: no close can fall before it
        elif len(records) < KEPT_RECORDS:
            records.append(record)
        content_type = record.type
        if content_type == tls.APPLICATION_DATA:
            if len(side.type23_head) < TYPE23_HEAD:
                side.type23_head.append(record)
            side.type23_tail.append(record)
        elif content_type == tls.HANDSHAKE and side.finished is None and side.tracker.ccs_seen \
                and not record.messages:
            side.finished = record.last_frame
        if self.on_record is not None:
            self.fix_roles()
            self.on_record(self, side, record)

    # -- what is application data (SIGNATURES.md, "Application data") ---------

    def client_finished(self):
        """TLS 1.3: the client's Finished, the last record of its encrypted handshake
        flight (certificate messages may come before it); else its first type-23 record."""
        head = self.client.type23_head
        for record in head[:TYPE23_HEAD // 2]:
            if record.length in tls.TLS13_FINISHED_LENGTHS:
                return record
        return head[0] if head else None

    def first_request(self):
        """TLS 1.3: the client's first application data record."""
        finished = self.client_finished()
        if finished is not None:
            for record in self.client.type23_head:
                if record.index > finished.index and record.length not in tls.TLS13_ALERT_LENGTHS:
                    return record
        return None

    def is_application_data(self, side, record):
        """Whether a record is application data. Up to TLS 1.2: every type-23 record.
        In TLS 1.3, a side's first encrypted flight is handshake (the client's up to its
        Finished); what the server sends before the client's first request is
        post-handshake (session tickets)."""
        if record.type != tls.APPLICATION_DATA:
            return False
        if tls.version_name(self.version) != "1.3":
            return True
        if side is self.client:
            finished = self.client_finished()
            return finished is not None and record.index > finished.index
        request = self.first_request()
        return request is not None and record.first_frame > request.first_frame

    def is_post_handshake(self, side, record):
        """TLS 1.3: a server record after the client's Finished that is not application
        data (session tickets, key updates)."""
        if side is self.client or record.type != tls.APPLICATION_DATA \
                or tls.version_name(self.version) != "1.3":
            return False
        finished = self.client_finished()
        return (finished is not None and record.first_frame > finished.last_frame
                and not self.is_application_data(side, record))

    def last_application_data(self, side):
        """The side's last application data record (None if it sent none)."""
        tls13 = tls.version_name(self.version) == "1.3"
        for record in reversed(side.type23_tail):
            if tls13 and record.length in tls.TLS13_ALERT_LENGTHS:
                continue  # an encrypted alert
            if self.is_application_data(side, record):
                return record
        return None

    def finish(self):
        """End of the connection: release what the reassemblers hold."""
        for side in (self.a, self.b):
            events = side.stream.finish()
            if events:
                self._consume(side, events)
            if side.tracker is not None:
                for record in side.tracker.end():
                    self._record(side, record)
        self.fix_roles()


def wire_key(src, sport, dst, dport):
    """The addresses and ports of a segment as its IP and TCP headers carry them
    (for IPv4 without options: 12 contiguous bytes of the frame)."""
    return bytes(src) + bytes(dst) + _PORTS(sport, dport)


class ConnectionTable:
    """Finds each segment's connection, numbering them as Wireshark's tcp.stream."""

    def __init__(self, on_connection, on_record=None, idle_timeout=IDLE_TIMEOUT,
                 linger=LINGER):
        self.on_connection = on_connection
        self.on_record = on_record
        self.idle_timeout = idle_timeout
        self.linger = linger
        self.by_key = {}              # (src, sport, dst, dport) -> (connection, side, peer)
        self.by_wire = {}             # the same, keyed by src + dst + sport + dport as on the wire
        self.tombstones = {}          # 4-tuple -> (stream, kind, time, client endpoint)
        self.streams = 0
        self.late_packets = 0
        self.now = 0.0
        self._countdown = SWEEP_EVERY
        self._swept = float("-inf")   # capture time of the last sweep

    def segment(self, frame, time, segment):
        """A decoded segment: ``frame.decode``'s tuple."""
        self.tick(time)
        self.place(frame, time, segment)

    def tick(self, time):
        """Capture time moves on (once per segment): now and then, sweep."""
        self.now = time
        self._countdown -= 1
        if not self._countdown or time - self._swept > SWEEP_SECONDS:
            self._countdown = SWEEP_EVERY
            self._swept = time
            self.sweep()

    def place(self, frame, time, segment):
        """A decoded segment, after ``tick``: to its connection."""
        src, dst, sport, dport, seq, ack, flags, _, payload, missing = segment
        entry = self.by_key.get((src, sport, dst, dport))
        if entry is None or flags & SYN or entry[1].first_seq is None:
            entry = self._place((src, sport, dst, dport), frame, time, flags, seq, entry)
            if entry is None:
                return
        entry[0].packet(entry[1], entry[2], frame, time, seq, ack, flags, payload, missing)

    def packet(self, frame, time, src, dst, sport, dport, seq, ack, flags, payload, missing):
        """A segment given field by field."""
        self.segment(frame, time, (src, dst, sport, dport, seq, ack, flags, 0, payload, missing))

    def _place(self, key, frame, time, flags, seq, entry):
        """The entry of a segment that may open, reopen or start a connection."""
        if entry is None:
            entry = self._open(key, frame, time, flags, seq)
            if entry is None:
                return None
        elif flags & (SYN | ACK) == SYN and entry[1].first_seq is not None and seq != entry[1].first_seq:
            # a new connection on the same 4-tuple
            self._end(entry[0], "port reuse")
            entry = self._open(key, frame, time, flags, seq)
        side = entry[1]
        if side.first_seq is None:
            side.first_seq = seq if flags & SYN else (seq - 1) & 0xFFFFFFFF
        if flags & SYN:
            if flags & ACK:
                side.synack = True
            else:
                side.syn = True
        return entry

    def _open(self, key, frame, time, flags, seq):
        src, sport, dst, dport = key
        tomb = self.tombstones.pop((src, sport, dst, dport), None) or \
            self.tombstones.pop((dst, dport, src, sport), None)
        if tomb is not None and not flags & SYN:
            stream, kind, _, client = tomb
            if kind == "closed":
                # a late packet of an ended connection
                self.tombstones[key] = tomb
                self.late_packets += 1
                return None
            # the same connection, woken after an idle timeout: reported again, as
            # a continuation with the same stream number and roles
            conn = self._new(stream, key, time, midstream=True)
            conn.continued = True
            conn.fix_roles(client)
        else:
            conn = self._new(self.streams, key, time, midstream=not flags & SYN)
            self.streams += 1
        return self.by_key[key]

    def _new(self, stream, key, time, midstream):
        src, sport, dst, dport = key
        a, b = Side(src, sport), Side(dst, dport)
        conn = Connection(stream, a, b, time, self.on_record, midstream)
        self.by_key[key] = self.by_wire[wire_key(src, sport, dst, dport)] = (conn, a, b)
        self.by_key[(dst, dport, src, sport)] = self.by_wire[wire_key(dst, dport, src, sport)] = \
            (conn, b, a)
        return conn

    def _end(self, conn, reason):
        a, b = conn.a, conn.b
        key = (a.addr, a.port, b.addr, b.port)
        self.by_key.pop(key, None)
        self.by_key.pop((b.addr, b.port, a.addr, a.port), None)
        self.by_wire.pop(wire_key(a.addr, a.port, b.addr, b.port), None)
        self.by_wire.pop(wire_key(b.addr, b.port, a.addr, a.port), None)
        kind = "idle" if reason == "idle" else "closed"
        self.tombstones[key] = (conn.stream, kind, conn.last, (conn.client.addr, conn.client.port))
        conn.end_reason = reason
        conn.finish()
        self.on_connection(conn)

    def sweep(self):
        """Finish connections that ended a while ago or went idle."""
        now = self.now
        ended = []
        seen = set()
        for conn, _, _ in self.by_key.values():
            if id(conn) in seen:
                continue
            seen.add(id(conn))
            if conn.ended_at is not None and now - conn.last > self.linger:
                ended.append((conn, "closed"))
            elif now - conn.last > self.idle_timeout:
                ended.append((conn, "idle"))
        for conn, reason in sorted(ended, key=lambda item: item[0].stream):
            self._end(conn, reason)
        horizon = now - 2 * self.idle_timeout
        if len(self.tombstones) > 100000:
            self.tombstones = {k: v for k, v in self.tombstones.items() if v[2] >= horizon}

    def finish(self):
        """End of the capture: finish every connection, in stream order."""
        conns = {id(c): c for c, _, _ in self.by_key.values()}
        for conn in sorted(conns.values(), key=lambda c: c.stream):
            self._end(conn, "end of capture")
        self.tombstones = {}
