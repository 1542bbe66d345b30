"""Findings on connections built segment by segment (the real ones are in test_samples)."""

from pcap_tls_split import findings
from pcap_tls_split.tcp import ConnectionTable

ACK, PSH, FIN, SYN, RST = 0x10, 0x08, 0x01, 0x02, 0x04
CLIENT, SERVER = b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x01"


def record(content_type, body):
    return bytes([content_type, 3, 3]) + len(body).to_bytes(2, "big") + body


class Wire:
    """A TCP connection written packet by packet into a ConnectionTable."""

    def __init__(self):
        self.ended = []
        self.table = ConnectionTable(self.ended.append)
        self.frame = 0
        self.time = 1000.0
        self.seq = {"client": 1000, "server": 5000}
        self.table_packet("client", SYN, b"", ack=0)
        self.seq["client"] += 1
        self.table_packet("server", SYN | ACK, b"")
        self.seq["server"] += 1
        self.table_packet("client", ACK, b"")

    def table_packet(self, side, flags, payload, ack=None, dt=0.001):
        self.frame += 1
        self.time += dt
        other = "server" if side == "client" else "client"
        src, dst = (CLIENT, SERVER) if side == "client" else (SERVER, CLIENT)
        sport, dport = (50000, 443) if side == "client" else (443, 50000)
        self.table.packet(self.frame, self.time, src, dst, sport, dport, self.seq[side],
                          self.seq[other] if ack is None else ack, flags, payload, 0)

    def send(self, side, payload, flags=ACK | PSH, ack=None, dt=0.001):
        self.table_packet(side, flags, payload, ack=ack, dt=dt)
        self.seq[side] += len(payload) + (1 if flags & FIN else 0)

    def findings(self):
        self.table.finish()
        (conn,) = self.ended
        return conn, findings.evaluate(findings.Facts(conn))


HELLO = record(22, bytes.fromhex("01000004") + b"\x03\x03\x00\x00")
SERVER_HELLO = record(22, bytes.fromhex("02000026") + b"\x03\x03" + b"\x11" * 32 + b"\x00\x00\x2f\x00")


def handshake(wire):
    wire.send("client", HELLO)
    wire.send("server", SERVER_HELLO + record(20, b"\x01") + record(22, b"\x77" * 40))
    wire.send("client", record(20, b"\x01") + record(22, b"\x66" * 40))
    wire.send("client", record(23, b"GET / HTTP/1.1\r\n\r\n"))


def test_abort_in_the_middle_of_a_bulk_transfer_with_many_records_in_flight():
    """Captured at the server: 400 records sent beyond what the client had acknowledged."""
    wire = Wire()
    handshake(wire)
    base = wire.seq["server"]
    bodies = [record(23, bytes([i % 256]) * 1000) for i in range(500)]
    for body in bodies[:450]:
        wire.send("server", body, dt=0.0001)
    # the client had 10.5 records when it closed
    reach = base + 10 * 1005 + 500
    wire.send("client", b"", flags=ACK | FIN, ack=reach)
    for body in bodies[450:]:
        wire.send("server", body, dt=0.0001)
    wire.send("client", b"", flags=RST | ACK, ack=reach)
    conn, found = wire.findings()
    inside = [f for f in found if f.code == "close_inside_record"]
    assert inside, [f.code for f in found]
    assert inside[0].side == "client" and inside[0].evidence["record_index"] == 10 + 3
    assert inside[0].evidence["bytes_received"] == 500
    assert len(conn.server.records) < 600


def test_records_kept_stay_few_on_a_long_healthy_connection():
    wire = Wire()
    handshake(wire)
    for i in range(3000):
        wire.send("server", record(23, b"x" * 500))
        wire.send("client", b"", flags=ACK)
    conn = wire.table.by_key[(SERVER, 443, CLIENT, 50000)][0]
    assert len(conn.server.records) <= 3
    assert conn.server.total == 3 + 3000 - 1  # the last record is held until the next starts


# ServerHello negotiating TLS 1.3: supported_versions (43) = 0x0304
SERVER_HELLO_13 = record(22, bytes.fromhex("0200002e") + b"\x03\x03" + b"\x22" * 32
                         + bytes.fromhex("00 1301 00 0006 002b 0002 0304"))


def test_tls13_client_certificate_flight_is_handshake_and_tickets_are_not_data():
    """A TLS 1.3 client with a certificate (Certificate, CertificateVerify, Finished) that
    closes right after the handshake: the tickets pending are post-handshake (info)."""
    wire = Wire()
    wire.send("client", HELLO)
    wire.send("server", SERVER_HELLO_13 + record(20, b"\x01") + record(23, b"\x55" * 900))
    wire.send("client", record(20, b"\x01") + record(23, b"c" * 700) + record(23, b"v" * 280)
              + record(23, b"f" * 53))
    wire.send("client", b"", flags=ACK | FIN, dt=0.05)
    wire.send("server", record(23, b"t" * 250) + record(23, b"t" * 250), dt=0.2)
    wire.send("client", b"", flags=RST | ACK)
    conn, found = wire.findings()
    codes = {(f.code, f.severity) for f in found}
    assert ("close_before_pending_records", "info") in codes, codes
    assert ("reset_on_data_after_close", "info") in codes
    assert not any(f.severity == "high" for f in found)


def test_reaction_and_alignment_from_what_the_closer_had_received():
    """Captured at the server: the client's ACK covers only the first of three segments."""
    wire = Wire()
    handshake(wire)
    base = wire.seq["server"]
    body = record(23, b"r" * 3000)
    for i in range(3):
        wire.send("server", body[i * 1000:(i + 1) * 1000 + (5 if i == 2 else 0)], dt=0.001)
    wire.send("client", b"", flags=ACK | FIN, ack=base + 1000, dt=0.08)
    wire.send("server", b"", flags=ACK | FIN, dt=0.001)
    conn, found = wire.findings()
    (inside,) = [f for f in found if f.code == "close_inside_record"]
    assert inside.evidence["segments_received"] == 1 and inside.evidence["bytes_received"] == 1000
    assert abs(inside.evidence["reaction_time"] - 0.082) < 1e-6  # from the first segment, not the last
