"""What tshark says, placed in our side streams; and what of our run the bridge keeps.

Each record tshark reports is placed in its side stream (``frame_records``):
the relative sequence number of the frame's first payload byte plus the
record's position in the frame or, for a PDU reassembled over several
segments, the sequence number of the PDU's start (from this frame's own entry
in ``tcp.segments``). Relative sequence number 1 is offset 0: the first byte
after the SYN (or the first byte captured), as our ``Record.offset``. Our
records and tshark's are matched by connection, direction and offset, never by
order or by guess.
"""

import dataclasses
from collections import defaultdict
from dataclasses import dataclass

from ..api import FileRun
from ..api.run import call_back
from ..frame import FIN, RST
from ..report import ConnectionReport
from ..tls import wire as tls
from .tshark import set_filter

# -- what tshark says: records placed in their side stream -------------------------

@dataclass(frozen=True, slots=True)
class WiresharkRecord:
    """One TLS record as Wireshark dissects it, placed in its side stream."""

    frame: int
    """The frame Wireshark reports it in (where its reassembly completed)."""
    stream: int
    """Wireshark's ``tcp.stream``."""
    src: str
    dst: str
    offset: int
    """Where its header starts in the side stream (relative sequence number - 1)."""
    type: int
    """Content type on the wire (``"sslv2"``: an SSLv2-format record)."""
    length: int
    size: int
    """Bytes Wireshark dissected, header included."""
    summary: str = ""
    """Wireshark's one-line description of it (``Handshake Protocol: Client Hello``...)."""
    inner_type: int = None
    """Decrypted TLS 1.3 record: its inner content type."""
    decrypted: bool = False
    """Its content could be read: in the clear, or decrypted with the key log (None: unknown)."""
    protocol: str = None
    """Decrypted application data: the dissector Wireshark handed it to (``Data``...)."""
    plaintext: bytes = None
    """Decrypted application data handed to ``data``: its plaintext."""

    @property
    def complete(self):
        if self.type == tls.SSLV2:
            return True
        return self.type is not None and self.size == tls.HEADER_LENGTH + self.length


def _endpoint(addr, port):
    if addr is None or port is None:
        return None
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _fields(layer, name):
    container = layer.get_field(name)
    return container.all_fields if container is not None else []


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def frame_records(packet):
    """(frame, stream, src, dst, tcp flags, [WiresharkRecord]) of one pyshark packet,
    None without TCP. The innermost TCP header counts (tunnels); TLS quoted in
    an ICMP error is not a top-level layer, so it does not."""
    layers = packet.layers
    tcp_at = None
    for i, layer in enumerate(layers):
        if layer.layer_name == "tcp":
            tcp_at = i
    if tcp_at is None:
        return None
    tcp = layers[tcp_at]
    src = dst = None
    for layer in reversed(layers[:tcp_at]):
        if layer.layer_name in ("ip", "ipv6"):
            name = layer.layer_name
            sport, dport = tcp.get_field("tcp.srcport"), tcp.get_field("tcp.dstport")
            src = _endpoint(layer.get_field(f"{name}.src"), sport)
            dst = _endpoint(layer.get_field(f"{name}.dst"), dport)
            break
    frame = _int(packet.number)
    stream = _int(tcp.get_field("tcp.stream"))
    flags = tcp.get_field("tcp.flags")
    flags = int(flags, 16) if flags else 0
    seq = _int(tcp.get_field("tcp.seq"), 0)
    tcp_len = _int(tcp.get_field("tcp.len"), 0)
    payload = tcp.get_field("tcp.payload")
    if payload is not None:
        payload_start = _int(payload.main_field.pos, 0)
    else:
        port = tcp.get_field("tcp.srcport")
        payload_start = _int(port.main_field.pos, 0) + _int(tcp.get_field("tcp.hdr_len"), 0)
    segment_data = [(_int(f.pos, 0), _int(f.size, 0)) for f in _fields(tcp, "tcp.segment_data")]
    pdu_starts = []       # relative seq of each PDU reassembled in this frame
    waiting = []          # indexes of records whose plaintext comes next as data.data
    found = []
    for layer in layers[tcp_at + 1:]:
        raw_name = getattr(layer, "_layer_name", layer.layer_name)
        if raw_name in ("fake-field-wrapper", "data"):
            for segment in _fields(layer, "tcp.segment"):
                if _int(segment.show) == frame:
                    # this frame's part of the PDU: at ``lo`` in the PDU. Past its start,
                    # the part is the head of this frame's payload; at its start, where
                    # this frame's "TCP segment data" of that size sits (the tail of the
                    # payload, or its head for a PDU reassembled out of order)
                    lo, size = _int(segment.pos, 0), _int(segment.size, 0)
                    if lo:
                        pdu_starts.append(seq - lo)
                    else:
                        at = next((p for p, n in segment_data if n == size), None)
                        pdu_starts.append(seq + tcp_len - size if at is None else
                                          seq + at - payload_start)
            for data in _fields(layer, "data.data"):
                if waiting:
                    i = waiting.pop(0)
                    try:
                        plaintext = bytes.fromhex(data.raw_value or "")
                    except ValueError:
                        plaintext = None
                    found[i] = dataclasses.replace(found[i], plaintext=plaintext, decrypted=True)
        elif layer.layer_name == "tls":
            records = _tls_layer_records(layer)
            if not records:
                continue
            if records[0][0] >= payload_start:
                base = seq - payload_start          # the frame's own bytes
            elif pdu_starts:
                base = pdu_starts.pop(0)            # a PDU reassembled in this frame
            else:
                continue                            # cannot be placed: left out
            for pos, fields in records:
                found.append(WiresharkRecord(frame=frame, stream=stream, src=src, dst=dst,
                                             offset=base + pos - 1, **fields))
                if fields.get("protocol") == "Data":
                    waiting.append(len(found) - 1)
    return frame, stream, src, dst, flags, found


def _tls_layer_records(layer):
    """[(position, fields)] of the records in one ``tls`` layer. pyshark flattens a
    layer's fields by name, so each record's fields are found by position: its
    content type (or opaque type) at the record's start, the version 1 byte and
    the length 3 bytes on; a decrypted TLS 1.3 record's inner content type sits at
    its start too, after the opaque type."""
    records = _fields(layer, "tls.record")
    if not records:
        return []
    opaque = {}
    for f in _fields(layer, "tls.record.opaque_type"):
        opaque.setdefault(_int(f.pos), _int(f.show))
    types = defaultdict(list)
    for f in _fields(layer, "tls.record.content_type"):
        types[_int(f.pos)].append(_int(f.show))
    lengths = {}
    for f in _fields(layer, "tls.record.length"):
        lengths.setdefault(_int(f.pos), _int(f.show))
    protocols = [(_int(f.pos), f.show) for f in _fields(layer, "tls.app_data_proto")]
    out = []
    for record in records:
        pos, size = _int(record.pos, 0), _int(record.size, 0)
        if pos in opaque:
            wire = opaque[pos]
            inner = types[pos][0] if types.get(pos) else None
        else:
            wire = types[pos][0] if types.get(pos) else None
            inner = None
        if wire is None:
            # SSLv2: no content type; its length is its header's first field (an
            # encrypted SSLv2 record shows none: then its size is all there is)
            wire = tls.SSLV2
            length = lengths.get(pos, size - 2)
        else:
            length = lengths.get(pos + 3, 0)
        protocol = next((name for p, name in protocols if pos <= p < pos + size), None)
        summary = (record.showname or "").split("Record Layer: ", 1)[-1]
        if wire == tls.APPLICATION_DATA:
            # TLS 1.3: an inner type is there once decrypted; TLS 1.2: the plaintext
            # (data.data) that follows says so (``frame_records``); handed to
            # another dissector (ALPN): unknown
            decrypted = True if inner is not None else (None if protocol not in (None, "Data") else False)
        else:
            decrypted = "Encrypted" not in summary      # "Encrypted Handshake Message", "Encrypted Alert"
        out.append((pos, dict(type=wire, length=length, size=size, summary=summary,
                              inner_type=inner, protocol=protocol, decrypted=decrypted)))
    return out


class WiresharkView:
    """tshark's records and first FIN/RST per (stream, sender) of one file."""

    def __init__(self):
        self.records = defaultdict(dict)   # (stream, src, dst) -> {offset: WiresharkRecord}
        self.fin = {}                      # (stream, src, dst) -> first FIN frame
        self.rst = {}
        self.ends = {}                     # stream -> frozenset({src, dst})

    def packet(self, packet):
        facts = frame_records(packet)
        if facts is None:
            return
        frame, stream, src, dst, flags, records = facts
        key = (stream, src, dst)
        self.ends.setdefault(stream, frozenset((src, dst)))
        if flags & FIN:
            self.fin.setdefault(key, frame)
        if flags & RST:
            self.rst.setdefault(key, frame)
        side = self.records[key]
        for record in records:
            side.setdefault(record.offset, record)   # a record reported twice: kept once

    def match(self, stream, ends, taken):
        """Wireshark's stream number for our connection ``stream`` between ``ends``."""
        if self.ends.get(stream) == ends and stream not in taken:
            return stream
        for candidate in sorted(self.ends):
            if self.ends[candidate] == ends and candidate not in taken:
                return candidate
        return None


# -- our side: the library's per-file run, keeping what the cross-check needs ----------

@dataclass
class OurSide:
    role: str
    src: str
    dst: str
    fin: int = None
    rst: int = None
    records: list = dataclasses.field(default_factory=list)
    gaps: int = 0
    """Holes the capture left in this side's stream."""


@dataclass
class OurConnection:
    stream: int
    client: str
    server: str
    starttls: bool
    sides: dict
    report: ConnectionReport = None
    wanted: list = dataclasses.field(default_factory=list)
    """(finding index, evidence key, connection.Side, Record) of the records a finding is about."""
    context: dict = dataclasses.field(default_factory=dict)
    """(sender, offset of a wanted record) -> the application data records it sent just
    before it, in stream order (to find the HTTP message a body belongs to)."""


class BridgeRun(FileRun):
    """The library's run of one file, noting each TLS connection as it ends."""

    def __init__(self, path, options, on_connection=None, on_record=None, on_tls=None):
        super().__init__(path, options, on_connection, on_record)
        self.on_tls = on_tls

    def connection_ended(self, conn):
        super().connection_ended(conn)
        if self.on_tls is None or not conn.is_tls:
            return
        stream = self.options.get("stream")
        if stream is None or conn.stream == stream:
            call_back(self.on_tls, conn)     # (the caller's: FileRun.run raises what it raises)


def our_connection(conn, report=None):
    sides = {}
    for side in (conn.client, conn.server):
        role = conn.role(side)
        peer = conn.peer(side)
        sides[role] = OurSide(role, side.endpoint, peer.endpoint,
                               fin=side.fin.frame if side.fin else None,
                               rst=side.rst.frame if side.rst else None, gaps=side.stream.gaps)
    midstream = conn.midstream or any(s.stream.midstream for s in (conn.a, conn.b))
    starts = [s.tracker.tls_start for s in (conn.a, conn.b)
              if s.tracker is not None and s.tracker.tls_start is not None]
    starttls = not midstream and any(start > 0 for start in starts)
    return OurConnection(conn.stream, conn.client.endpoint, conn.server.endpoint,
                          starttls, sides, report)


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def decode_as(connections):
    """Server ports to decode as TLS: those where TLS starts at the first byte, not a
    port where a STARTTLS connection runs (tshark's own dissector handles those)."""
    direct = {port_of(c.server) for c in connections if not c.starttls}
    starttls = {port_of(c.server) for c in connections if c.starttls}
    return sorted(direct - starttls)


def ports_filter(tshark, connections):
    return f"tcp.port in {set_filter(tshark, {port_of(c.server) for c in connections})}"
