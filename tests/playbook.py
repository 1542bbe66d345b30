"""Playbook tests: a connection written as a script of what happens on the wire.

    wire = Wire()                                  # SYN, SYN-ACK, ACK
    wire.tls12()                                   # ClientHello ... both Finished
    wire.client.send(app(18))                      # a request: one segment
    wire.server.send(app(40), app(300), pause=0.3) # two records, two segments, a pause
    wire.client.fin(after=0.05)                    # the client closes ...
    found = wire.findings()                        # ... and out come the findings

Each ``send`` is one TCP segment holding the records (or bytes) given, sent by
that side with the next sequence number and acknowledging everything the
other side sent so far (``ack=`` overrides it: a byte count into the peer's
stream). The segments go through the package's own steps
(``ConnectionTable.packet``, ``findings.evaluate``), sans-IO: no capture file.
"""

from pcap_tls_split import findings
from pcap_tls_split.frame import ACK, FIN, PSH, RST, SYN
from pcap_tls_split.report import connection_report
from pcap_tls_split.tcp import ConnectionTable

CLIENT_ADDR, SERVER_ADDR = b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x01"
CLIENT_PORT, SERVER_PORT = 50000, 443


def record(content_type, body, version=0x0303):
    """A TLS record: 5-byte header and body."""
    return bytes([content_type, version >> 8, version & 0xFF]) + len(body).to_bytes(2, "big") + body


def handshake_message(msg_type, body):
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def client_hello():
    return record(22, handshake_message(1, b"\x03\x03" + b"\x00" * 2), version=0x0301)


def server_hello(version="1.2"):
    """A ServerHello; for TLS 1.3 with supported_versions (43) = 0x0304."""
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x13\x01" + b"\x00"
    if version == "1.3":
        body += bytes.fromhex("0006 002b 0002 0304")
    return record(22, handshake_message(2, body))


def ccs():
    return record(20, b"\x01")


def encrypted_handshake(size=40):
    """An encrypted handshake record (a Finished after change_cipher_spec, TLS 1.2)."""
    return record(22, b"\x66" * size)


def app(size, fill=b"a"):
    """An application_data record with a body of ``size`` bytes."""
    return record(23, fill * size)


def alert(level=1, description=0):
    """A clear alert (close_notify by default)."""
    return record(21, bytes([level, description]))


class Sender:
    """One side of the scripted connection."""

    def __init__(self, wire, name, addr, port, isn):
        self.wire, self.name, self.addr, self.port = wire, name, addr, port
        self.isn = isn                # its initial sequence number (its SYN's)
        self.seq = isn

    @property
    def peer(self):
        return self.wire.server if self is self.wire.client else self.wire.client

    def packet(self, flags, payload=b"", ack=None, after=0.001):
        """One segment: ``ack`` is a byte count into the peer's stream (None: all of it)."""
        wire = self.wire
        wire.frame += 1
        wire.time += after
        peer = self.peer
        ack_seq = peer.seq if ack is None else (peer.isn + 1 + ack) & 0xFFFFFFFF
        wire.table.packet(wire.frame, wire.time, self.addr, peer.addr, self.port, peer.port,
                          self.seq, ack_seq if flags & ACK else 0, flags, payload, 0)
        self.seq = (self.seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return wire.frame

    def send(self, *chunks, ack=None, pause=None, after=0.001, flags=ACK | PSH):
        """Each of ``chunks`` (records or bytes) ... all in one segment; with
        ``pause``, one segment each, ``pause`` seconds apart. Returns the last frame."""
        if pause is None:
            return self.packet(flags, b"".join(chunks), ack=ack, after=after)
        frame = None
        for i, chunk in enumerate(chunks):
            frame = self.packet(flags, chunk, ack=ack, after=after if i == 0 else pause)
        return frame

    def ack(self, upto=None, after=0.001):
        """A bare acknowledgment (of ``upto`` bytes of the peer's stream; None: all)."""
        return self.packet(ACK, ack=upto, after=after)

    def fin(self, ack=None, after=0.001, payload=b""):
        return self.packet(ACK | FIN, payload, ack=ack, after=after)

    def rst(self, ack=None, after=0.001, with_ack=True):
        return self.packet((RST | ACK) if with_ack else RST, ack=ack, after=after)

    @property
    def sent(self):
        """Bytes of payload this side sent so far."""
        return (self.seq - self.isn - 1) & 0xFFFFFFFF


class Wire:
    """A TCP connection written packet by packet into a ConnectionTable."""

    def __init__(self, handshake=True, client_isn=1000, server_isn=5000):
        self.ended = []
        self.table = ConnectionTable(self.ended.append)
        self.frame = 0
        self.time = 1000.0
        self.client = Sender(self, "client", CLIENT_ADDR, CLIENT_PORT, client_isn)
        self.server = Sender(self, "server", SERVER_ADDR, SERVER_PORT, server_isn)
        if handshake:
            self.client.packet(SYN)
            self.server.packet(SYN | ACK)
            self.client.ack()

    def tls12(self, request=None):
        """A TLS 1.2 handshake (and the client's request, when given)."""
        self.client.send(client_hello())
        self.server.send(server_hello("1.2"), ccs(), encrypted_handshake())
        self.client.send(ccs(), encrypted_handshake())
        if request is not None:
            self.client.send(request)

    def tls13(self, request=None):
        """A TLS 1.3 handshake: the server's flight, the client's Finished (53 bytes)."""
        self.client.send(client_hello())
        self.server.send(server_hello("1.3"), ccs(), app(900, b"\x55"))
        self.client.send(ccs(), app(53, b"f"))
        if request is not None:
            self.client.send(request)

    def connection(self):
        """The finished connection (the capture ends here)."""
        if not self.ended:
            self.table.finish()
        (conn,) = self.ended
        return conn

    def findings(self):
        """The findings of the connection, in frame order."""
        return findings.evaluate(findings.Facts(self.connection()))

    def report(self):
        """Its ``ConnectionReport``."""
        conn = self.connection()
        facts = findings.Facts(conn)
        return connection_report("playbook", conn, facts, findings.evaluate(facts))


def codes(found):
    """{(code, side, severity)} of findings."""
    return {(f.code, f.side, str(f.severity)) for f in found}
