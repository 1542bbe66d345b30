"""A second look at a few connections: every packet and record of the streams asked for.

The analysis keeps of a connection only what its findings need (the records a
close can fall among, its last segments). A picture or an extract needs more,
of a few connections only: every packet (frame, time, flags, where its bytes
and its acknowledgment fall in the side streams, payload length) and every
record with the segments that carried it. ``collect`` reads a capture again,
frame by frame as the reference loop does (``loop.steps``: ``frame.decode``,
then the connection table), through a ``ConnectionTable`` that keeps that for
the selected streams only, and hands each selected connection's ``Detail``
over as it ends. Nothing is added to the analysis path; memory stays bounded:
per connection at most ``HEAD`` packets from its start and ``TAIL`` from its
end are kept (the ones between are counted), and as many records.
"""

from collections import deque
from typing import NamedTuple

from ..api.run import call_back, raising_callbacks
from ..capture import CaptureError, open_capture
from ..findings import Facts, evaluate
from ..frame import ACK, FIN, ICMP_QUOTE, RST, SUPPORTED_LINKTYPES, SYN, decode
from ..report import connection_report
from ..tcp import IDLE_TIMEOUT, ConnectionTable
from ..tls import wire

HEAD = 600          # packets (and records) kept from a connection's start...
TAIL = 600          # ...and from its end; those between are counted, not kept
RUN_KEEP = 3        # of a long run of bulk data segments, the first and last this many are drawn


class Packet(NamedTuple):
    """One packet of a connection, as a picture shows it."""

    frame: int
    """Its frame number (1-based, as Wireshark shows it)."""
    time: float
    """Its capture time."""
    from_client: bool
    """Sent by the client."""
    flags: int
    """Its TCP flags (``frame.SYN``, ``FIN``, ``RST``, ``ACK``...); with ``frame.ICMP_QUOTE``, an
    ICMP error quoting a segment of the connection (``from_client``: the quoted one's sender)."""
    offset: int
    """Where its first payload byte falls in its sender's side stream (None: unknown)."""
    ack: int
    """How far into the peer's side stream it acknowledges (None: no ACK)."""
    length: int
    """Payload bytes (those the snap length cut included)."""

    @property
    def pure_ack(self):
        """No payload and no SYN, FIN or RST (and no ICMP error)."""
        return not self.length and not self.flags & (SYN | FIN | RST | ICMP_QUOTE)

    @property
    def icmp(self):
        """An ICMP error quoting a segment of the connection (Wireshark counts it in its stream)."""
        return bool(self.flags & ICMP_QUOTE)


class Omitted(NamedTuple):
    """The packets between the kept start and end of a long connection."""

    packets: int
    client_bytes: int
    server_bytes: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float


class Piece(NamedTuple):
    """The part of one record that one segment carried."""

    record: object
    """The ``tls.Record``."""
    part: int
    """1-based position among the record's segments."""
    parts: int
    """How many segments carried the record."""
    start: int
    """Side-stream offset of the first byte of the record in this segment."""
    end: int
    """Side-stream offset just past the last one."""
    header_bytes: int
    """How many of the record's 5 header bytes came in this segment."""


# What a record was, for a picture (SIGNATURES.md "Application data")
HANDSHAKE, CCS, ALERT, APPLICATION_DATA, ENCRYPTED_HANDSHAKE, POST_HANDSHAKE, OTHER = (
    "handshake", "change_cipher_spec", "alert", "application_data", "encrypted_handshake",
    "post_handshake", "other")


class Detail:
    """Every kept packet and record of one connection, with its report.

    ``report``: its ``ConnectionReport`` (findings, close, reach); ``packets``:
    ``Packet``s in capture order, with at most one ``Omitted`` among them;
    ``records``: ``{"client": [Record...], "server": [...]}`` in stream order
    (``omitted_records`` counts the ones left out); ``kind``: what each record
    was, by ``(role, index)``; ``tls_start``: where TLS began in each side stream;
    ``sni``: the server name the client asked for; ``late``: packets that came after
    the connection had ended."""

    def __init__(self, path, report, packets, records, omitted_records, kind, tls_start, sni,
                 client_random=None):
        self.file = path
        self.report = report
        self.stream = report.stream
        self.packets = packets
        self.records = records
        self.omitted_records = omitted_records
        self.kind = kind
        self.tls_start = tls_start
        self.sni = sni
        self.client_random = client_random
        """The random of the client's ClientHello (the key of its key log lines; None: unseen)."""
        self.late = 0

    @property
    def start(self):
        return self.packets[0].time if self.packets else self.report.start

    def pieces(self):
        """{frame: [Piece...]}: the record parts each kept segment carried, in stream order."""
        out = {}
        for role in ("client", "server"):
            for record in self.records[role]:
                start = record.offset
                parts = len(record.frames)
                header_end = record.offset + wire.HEADER_LENGTH
                for i, (frame, end) in enumerate(zip(record.frames, record.segment_ends)):
                    header = max(0, min(end, header_end) - max(start, record.offset))
                    out.setdefault(frame, []).append(Piece(record, i + 1, parts, start, end, header))
                    start = end
        return out

    def is_bulk(self, packet, pieces, beyond):
        """A plain data segment carrying only application data within the reach: one a
        long run may fold."""
        if not isinstance(packet, Packet) or packet.flags & (SYN | FIN | RST | ICMP_QUOTE) or not packet.length:
            return False
        role = "client" if packet.from_client else "server"
        carried = pieces.get(packet.frame, [])
        return bool(carried) and all(self.kind.get((role, c.record.index)) == APPLICATION_DATA
                                     and (role, c.record.index) not in beyond for c in carried)

    def drawn(self, pieces, beyond, keep=RUN_KEEP):
        """What a picture draws, in order: the ``Packet``s that are not pure ACKs, the
        ``Omitted`` if any, and in place of the middle of each run of more than
        ``2 * keep + 1`` bulk segments of one side, a list of those segments."""
        shown = [p for p in self.packets if isinstance(p, Omitted) or not p.pure_ack]
        out, i = [], 0
        while i < len(shown):
            j = i
            while j < len(shown) and self.is_bulk(shown[j], pieces, beyond) \
                    and shown[j].from_client == shown[i].from_client:
                j += 1
            if j - i > 2 * keep + 1:
                out += shown[i:i + keep] + [shown[i + keep:j - keep]] + shown[j - keep:j]
                i = j
            else:
                out += shown[i:max(j, i + 1)]
                i = max(j, i + 1)
        return out

    def records_beyond_reach(self):
        """The peer's records (or their parts) beyond the first closer's reach:
        {(role, index)}; empty when nobody closed."""
        close = self.report.close
        if close.first_closer is None or close.reach is None:
            return set()
        peer = "server" if close.first_closer == "client" else "client"
        return {(peer, r.index) for r in self.records[peer]
                if r.offset + wire.HEADER_LENGTH + r.length > close.reach}


class _Keeper:
    """What is kept of one selected connection while it runs."""

    __slots__ = ("head", "omitted", "records", "tail")

    def __init__(self):
        self.head = []
        self.tail = deque(maxlen=TAIL)
        self.omitted = None        # [packets, client bytes, server bytes, first frame, last frame, times]
        self.records = {}          # side -> (head list, tail deque)

    def packet(self, packet, sender_is_a):
        if len(self.head) < HEAD:
            self.head.append((packet, sender_is_a))
            return
        if len(self.tail) == TAIL:
            old, old_a = self.tail[0]
            o = self.omitted
            if o is None:
                o = self.omitted = [0, 0, 0, old.frame, old.frame, old.time, old.time]
            o[0] += 1
            o[1 if old_a else 2] += old.length       # sides resolved to roles at the end
            o[4], o[6] = old.frame, old.time
        self.tail.append((packet, sender_is_a))

    def record(self, side, record):
        head, tail = self.records.setdefault(side, ([], deque(maxlen=TAIL)))
        if len(head) < HEAD:
            head.append(record)
        else:
            tail.append(record)            # the oldest falls out (Detail.omitted_records counts it)


class KeepingTable(ConnectionTable):
    """The connection table, keeping every packet and record of the ``wanted`` streams."""

    def __init__(self, wanted, on_detail, idle_timeout=IDLE_TIMEOUT, keep=True):
        super().__init__(self.ended, on_record=self.record_found if keep else None,
                         idle_timeout=idle_timeout)
        self.wanted = wanted
        self.keep = keep                # False: only which stream each segment is of
        self.on_detail = on_detail      # on_detail(conn, keeper) as a wanted connection ends
        self.keepers = {}               # id(connection) -> _Keeper
        self.last_stream = None         # stream of the segment placed last (None: none)
        self.late = {}                  # stream -> packets that came after it ended

    def place(self, frame, time, segment, wire=None):
        super().place(frame, time, segment, wire)
        src, dst, sport, dport, seq, ack, flags, _, payload, missing = segment
        entry = self.find(src, sport, dst, dport)
        if entry is None:
            tomb = self.tombstone(src, sport, dst, dport)
            self.last_stream = None if tomb is None else tomb.stream
            if tomb is not None and tomb.stream in self.wanted:
                self.late[tomb.stream] = self.late.get(tomb.stream, 0) + 1
            return
        conn = entry.connection
        self.last_stream = conn.stream
        if conn.stream not in self.wanted:
            return
        keeper = self.keepers.get(id(conn))
        if keeper is None:
            keeper = self.keepers[id(conn)] = _Keeper()
        if not self.keep:
            return
        side, peer = entry.side, entry.peer
        if flags & ICMP_QUOTE:       # not a packet of the connection: what it says of one
            keeper.packet(Packet(frame, time, None, flags, None, None, 0), side is conn.a)
            return
        offset = None
        if side.stream.base is not None:
            offset = side.stream.offset(seq) + (1 if flags & SYN else 0)
        acked = peer.stream.offset(ack) if flags & ACK and peer.stream.base is not None else None
        keeper.packet(Packet(frame, time, None, flags, offset, acked, len(payload) + missing),
                      side is conn.a)

    def record_found(self, conn, side, record):
        keeper = self.keepers.get(id(conn))
        if keeper is not None:
            keeper.record(side is conn.a, record)

    def ended(self, conn):
        keeper = self.keepers.pop(id(conn), None)
        if keeper is not None and conn.is_tls:
            self.on_detail(conn, keeper)


def record_kinds(conn, records):
    """What each record was: {(role, index): kind} (handshake, application_data,
    encrypted_handshake, post_handshake, alert...)."""
    facts = Facts(conn)
    app = facts.app
    out = {}
    for role, kept in records.items():
        side = conn.client if role == "client" else conn.server
        from_client = role == "client"
        for record in kept:
            kind = OTHER
            if record.type == wire.HANDSHAKE:
                kind = HANDSHAKE
            elif record.type == wire.CHANGE_CIPHER_SPEC:
                kind = CCS
            elif facts.is_alert(side, record):
                kind = ALERT
            elif record.type == wire.APPLICATION_DATA:
                if app.is_application_data(from_client, record):
                    kind = APPLICATION_DATA
                elif app.is_post_handshake(from_client, record):
                    kind = POST_HANDSHAKE
                else:
                    kind = ENCRYPTED_HANDSHAKE
            out[(role, record.index)] = kind
    return out


def _detail(path, conn, keeper, report):
    client_is_a = conn.client is conn.a
    items = [p._replace(from_client=a == client_is_a) for p, a in keeper.head]
    if keeper.omitted is not None:
        o = keeper.omitted
        client_bytes, server_bytes = (o[1], o[2]) if client_is_a else (o[2], o[1])
        items.append(Omitted(o[0], client_bytes, server_bytes, o[3], o[4], o[5], o[6]))
    items += [p._replace(from_client=a == client_is_a) for p, a in keeper.tail]
    records, omitted = {}, {"client": 0, "server": 0}
    for side_is_a, (head, tail) in keeper.records.items():
        role = "client" if side_is_a == client_is_a else "server"
        records[role] = head + list(tail)
    for side in (conn.client, conn.server):
        role = conn.role(side)
        kept = records.setdefault(role, [])
        partial = side.partial
        if partial is not None and (not kept or kept[-1].index < partial.index):
            kept.append(partial)
        omitted[role] = max(0, side.total - len([r for r in kept if r.complete]))
    tls_start = {conn.role(s): s.tracker.tls_start if s.tracker is not None else None
                 for s in (conn.client, conn.server)}
    tracker = conn.client.tracker
    sni = tracker.sni if tracker is not None else None
    client_random = tracker.client_random if tracker is not None else None
    return Detail(path, report, items, records, omitted, record_kinds(conn, records), tls_start, sni,
                  client_random)


class Collected(NamedTuple):
    """What ``collect`` read of one capture."""

    details: list
    """The ``Detail`` of each selected TLS connection, in the order they ended."""
    errors: tuple
    """One line per problem reading it."""
    packets: int
    """Frames read."""
    readable: bool = True
    """False when the file could not be read as a capture at all."""


def _collect(capture, table, streams, on_frame, errors, path):
    """Every frame of ``capture`` to ``table``, and those of ``streams`` to
    ``on_frame``; returns the number of the last one."""
    n = 0
    with capture:
        for frame in capture.frames():
            n = frame.number
            try:
                segment = decode(frame.linktype, frame.data, frame.orig_len)
                if segment is None:
                    continue
                table.last_stream = None
                table.segment(frame.number, frame.time, segment)
            except Exception as exc:   # a bug: say so, keep going
                if len(errors) < 5:
                    errors.append(f"{path}: internal error at frame {n}: {type(exc).__name__}: {exc}")
                continue
            if on_frame is not None and table.last_stream in streams:
                call_back(on_frame, table.last_stream, frame)
        table.finish()
    return n


def collect(path, streams, reports=None, idle_timeout=None, on_frame=None, keep=True, draw=None):
    """Read ``path`` again keeping every packet and record of the ``streams`` (a set
    of ``tcp.stream`` numbers). ``reports``: {stream: [ConnectionReport...]} from an
    earlier analysis of the same file (else each connection's report is computed
    here). ``on_frame(stream, frame)``: called with every ``capture.Frame`` of the
    selected streams, in capture order (an extract writes them out). ``keep``: False
    keeps no packet or record (the details have none: an extract needs only the frames).
    ``draw(detail)``: what to keep of each detail instead of it, made as it ends.
    Returns ``Collected``; a file that cannot be read gives no details and its error."""
    streams = set(streams)
    details, errors = [], []
    reports = {k: list(v) for k, v in (reports or {}).items()}

    def on_detail(conn, keeper):
        waiting = reports.get(conn.stream)
        if waiting:
            report = waiting.pop(0)
        else:
            facts = Facts(conn)
            report = connection_report(path, conn, facts, evaluate(facts))
        made = _detail(path, conn, keeper, report)
        made.late = table.late.get(conn.stream, 0)
        details.append(made if draw is None else call_back(draw, made))

    table = KeepingTable(streams, on_detail,
                         idle_timeout=IDLE_TIMEOUT if idle_timeout is None else idle_timeout, keep=keep)
    try:
        capture = open_capture(path, SUPPORTED_LINKTYPES)
    except CaptureError as exc:
        return Collected([], (str(exc),), 0, False)
    # a callback's exception (on_frame, draw) is the caller's own
    n = raising_callbacks(_collect, capture, table, streams, on_frame, errors, path)
    errors = list(capture.errors) + errors
    if draw is None:
        for made in details:
            made.late = table.late.get(made.stream, 0)   # (late packets come after the end)
    return Collected(details, tuple(errors), n)
