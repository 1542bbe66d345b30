"""The findings (pcap_tls_split/findings/): one playbook per rule, and the code registry.

Each test is a script of what happens on the wire (tests/playbook.py) and the
findings that must come out; the same signatures on real captures are in
test_samples.py and test_lab.py.
"""

import re
from pathlib import Path

import pytest

from pcap_tls_split.findings import CODES, PREMATURE_CODES, SEVERITIES, Severity
from playbook import Wire, alert, app, ccs, client_hello, codes, record, server_hello

ROOT = Path(__file__).resolve().parent.parent
SIGNATURES = ROOT.parent / "shared" / "SIGNATURES.md"


# -- the registry --------------------------------------------------------------------

def test_severities_are_ordered_and_are_their_words():
    assert Severity.INFO < Severity.LOW < Severity.MEDIUM < Severity.HIGH
    assert Severity.HIGH >= "medium" and not Severity.LOW >= "medium"
    assert Severity("high") is Severity.HIGH and Severity.HIGH == "high" and str(Severity.LOW) == "low"
    assert SEVERITIES == ("info", "low", "medium", "high")
    assert max([Severity.LOW, Severity.HIGH, Severity.INFO]) is Severity.HIGH


def test_the_registry_names_the_readme_codes_with_their_severity():
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", readme, re.M))
    assert table == {name: code.severity.value for name, code in CODES.items()}
    assert set(PREMATURE_CODES) == {"close_inside_record", "close_before_pending_records",
                                    "close_before_peer_finished"}


# -- close_before_pending_records: the field bug ----------------------------------------

def field_bug(pause=0.3, tls13=False):
    """The field report: two response records in two segments, the client closes
    after the first, the second arrives and is answered with RST."""
    wire = Wire()
    (wire.tls13 if tls13 else wire.tls12)(request=app(60, b"g"))
    wire.server.send(app(120, b"h"))                # the headers record
    wire.client.fin(after=0.1)                      # "no more data": the client closes
    wire.server.send(app(400, b"b"), after=pause - 0.1)  # the body record, too late
    wire.client.rst()
    return wire


def test_the_field_bug_is_close_before_pending_records():
    found = field_bug().findings()
    assert ("close_before_pending_records", "client", "high") in codes(found)
    assert ("reset_on_data_after_close", "client", "medium") in codes(found)
    (pending,) = [f for f in found if f.code == "close_before_pending_records"]
    evidence = pending.evidence
    assert evidence["records_pending"] == 1 and evidence["bytes_pending"] == 405
    assert evidence["aligned"] is True and evidence["last_received"]["length"] == 120
    assert abs(evidence["peer_pause"] - 0.3) < 1e-6


def test_tls13_client_certificate_flight_is_handshake_and_tickets_are_not_data():
    """A TLS 1.3 client with a certificate (Certificate, CertificateVerify, Finished) that
    closes right after the handshake: the tickets pending are post-handshake (info)."""
    wire = Wire()
    wire.client.send(client_hello())
    wire.server.send(server_hello("1.3"), ccs(), app(900, b"\x55"))
    wire.client.send(ccs(), app(700, b"c"), app(280, b"v"), app(53, b"f"))
    wire.client.fin(after=0.05)
    wire.server.send(app(250, b"t"), app(250, b"t"), after=0.2)
    wire.client.rst()
    found = wire.findings()
    assert ("close_before_pending_records", "client", "info") in codes(found)
    assert ("reset_on_data_after_close", "client", "info") in codes(found)
    assert not any(f.severity >= Severity.HIGH for f in found)


# -- close_inside_record ---------------------------------------------------------------

def test_a_close_with_half_a_record_received_is_close_inside_record():
    wire = Wire()
    wire.tls12(request=app(40))
    body = app(3000, b"r")
    for i in range(3):                          # one record in three segments
        wire.server.send(body[i * 1000:(i + 1) * 1000 + (5 if i == 2 else 0)])
    wire.client.fin(ack=wire.server.sent - 2005, after=0.08)   # had only the first segment
    wire.server.fin()
    (inside,) = [f for f in wire.findings() if f.code == "close_inside_record"]
    assert inside.severity == "high" and inside.side == "client"
    assert inside.evidence["segments_received"] == 1 and inside.evidence["segments_total"] == 3
    assert abs(inside.evidence["reaction_time"] - 0.082) < 1e-6  # from the first segment, not the last


def test_abort_in_the_middle_of_a_bulk_transfer_with_many_records_in_flight():
    """Captured at the server: 400 records sent beyond what the client had acknowledged."""
    wire = Wire()
    wire.tls12(request=app(40))
    base = wire.server.sent
    bodies = [app(1000, bytes([i % 256])) for i in range(500)]
    for body in bodies[:450]:
        wire.server.send(body, after=0.0001)
    reach = base + 10 * 1005 + 500               # the client had 10.5 records when it closed
    wire.client.fin(ack=reach)
    for body in bodies[450:]:
        wire.server.send(body, after=0.0001)
    wire.client.rst(ack=reach)
    found = wire.findings()
    (inside,) = [f for f in found if f.code == "close_inside_record"]
    assert inside.side == "client" and inside.evidence["record_index"] == 10 + 3
    assert inside.evidence["bytes_received"] == 500
    assert len(wire.connection().server.records) < 600


# -- close_before_peer_finished ---------------------------------------------------------

def test_a_client_that_gives_up_during_the_servers_pause():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.client.fin(after=2.0)                  # no answer came: the client gives up
    wire.server.rst(after=0.001)
    found = wire.findings()
    assert ("close_before_peer_finished", "client", "medium") in codes(found)
    (finding,) = [f for f in found if f.code == "close_before_peer_finished"]
    assert finding.evidence["close"] == "idle" and finding.evidence["peer_answered"] is False


def test_not_when_the_peer_answered_and_closed_its_session_before_its_rst():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(200))
    wire.client.send(alert(), after=0.01)
    wire.client.fin()
    wire.server.send(alert())
    wire.server.rst()
    assert "close_before_peer_finished" not in {f.code for f in wire.findings()}


# -- the other codes -----------------------------------------------------------------------

def test_close_during_handshake():
    wire = Wire()
    wire.client.send(client_hello())
    wire.server.send(server_hello("1.2"))
    wire.client.fin(after=0.2)
    wire.server.fin()
    assert ("close_during_handshake", "client", "medium") in codes(wire.findings())


def test_truncated_record():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(500)[:300])            # it stops 205 bytes short
    wire.server.fin()
    (cut,) = [f for f in wire.findings() if f.code == "truncated_record"]
    assert cut.side == "server" and cut.evidence["bytes_missing"] == 205


def test_no_close_notify_abortive_close_and_fast_close():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(300))
    wire.server.fin(after=0.001)                # the last record and the FIN back to back
    wire.client.rst(after=0.05)
    found = codes(wire.findings())
    assert ("no_close_notify", "server", "low") in found
    assert ("fast_close_after_data", "server", "info") in found
    assert ("abortive_close", "client", "low") in found


def test_capture_ended_inside_record():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(2000)[:1000])
    assert ("capture_ended_inside_record", "server", "info") in codes(wire.findings())


def test_a_clean_exchange_has_no_finding():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(300))
    wire.client.send(alert(), after=0.01)
    wire.client.fin()
    wire.server.send(alert())
    wire.server.fin()
    assert wire.findings() == []


def test_records_kept_stay_few_on_a_long_healthy_connection():
    wire = Wire()
    wire.tls12(request=app(40))
    for _ in range(3000):
        wire.server.send(app(500, b"x"))
        wire.client.ack()
    conn = wire.table.entry(b"".join((wire.server.addr, wire.client.addr,
                                      (443).to_bytes(2, "big"), (50000).to_bytes(2, "big")))).connection
    assert len(conn.server.records) <= 3
    assert conn.server.total == 3 + 3000 - 1  # the last record is held until the next starts


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_every_finding_names_a_registered_code(version):
    wire = field_bug(tls13=version == "1.3")
    for finding in wire.findings():
        assert finding.code in CODES
        assert isinstance(finding.severity, Severity)


def test_the_report_is_built_from_the_same_facts():
    report = field_bug().report()
    assert report.close.first_closer == "client" and report.close.kind == "fin"
    assert report.close.aligned is True and report.close.last_record_straddled is False
    assert [f.code for f in report.findings][:1] == ["close_before_pending_records"]
    assert record(23, b"") == bytes.fromhex("1703030000")


# -- handshake-only aborts, peer farewells, one-sided captures, unread data, confidence --------

def test_a_preconnect_abandoned_before_the_servers_flight_is_no_field_bug():
    wire = Wire()
    wire.client.send(client_hello())
    wire.client.fin(after=0.02)
    wire.server.send(server_hello("1.3"), ccs(), app(900, b"\x55"), ack=0, after=0.08)
    wire.client.rst()
    found = codes(wire.findings())
    assert ("close_during_handshake", "client", "medium") in found
    assert ("close_before_pending_records", "client", "info") in found
    (lost,) = [f for f in wire.findings() if f.code == "reset_on_data_after_close"]
    assert lost.severity == "info" and lost.evidence["lost"] == "handshake"
    assert not any(f.severity >= Severity.HIGH for f in wire.findings())


def _goodbye_race(answer_after, server_closes=True):
    """A whole response, then the client's goodbye (a GOAWAY-sized record and
    close_notify, FIN); the server's own GOAWAY-sized record ``answer_after`` later."""
    wire = Wire()                                       # SYN to SYN-ACK: 1 ms
    wire.tls12(request=app(60))
    wire.server.send(app(700))
    wire.client.send(app(41, b"g"), alert(), after=0.05)
    wire.client.fin(after=0.0001)
    wire.server.send(app(41, b"g"), ack=wire.client.sent - 31, after=answer_after)
    if server_closes:
        wire.server.send(alert(), after=0.001)
        wire.server.fin(after=0.0001)
    wire.client.rst()
    return wire


def test_a_peer_farewell_is_low():
    found = _goodbye_race(answer_after=0.002).findings()
    (pending,) = [f for f in found if f.code == "close_before_pending_records"]
    assert pending.severity == "low" and pending.evidence["peer_farewell"] is True
    (lost,) = [f for f in found if f.code == "reset_on_data_after_close"]
    assert lost.severity == "info" and lost.evidence["lost"] == "farewell"


def test_a_record_at_the_servers_own_pace_is_still_the_field_bug():
    # 300 ms after the goodbye: far beyond one answer delay (1 ms) plus 5 ms
    found = _goodbye_race(answer_after=0.3).findings()
    assert ("close_before_pending_records", "client", "high") in codes(found)
    # and with no close of its own after it: no farewell either
    found = _goodbye_race(answer_after=0.002, server_closes=False).findings()
    assert ("close_before_pending_records", "client", "high") in codes(found)


def test_no_close_before_peer_finished_when_the_peer_closed_its_session_before_its_rst():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.client.fin(after=2.0)
    wire.server.send(alert(), after=0.001)
    wire.server.rst()
    assert "close_before_peer_finished" not in {f.code for f in wire.findings()}


def test_a_one_sided_capture_of_a_complete_handshake_is_no_close_during_handshake():
    wire = Wire(handshake=False)
    # only the client's packets were captured: SYN, hello, Finished, request, close_notify, FIN
    wire.client.packet(0x02)
    wire.client.send(client_hello(), ack=0)
    wire.client.send(ccs(), app(53, b"f"), ack=0)
    wire.client.send(app(97), ack=0)
    wire.client.fin(ack=0, after=0.05)
    found = codes(wire.findings())
    assert not any(code == "close_during_handshake" for code, _, _ in found), found
    assert ("no_close_notify", "client", "low") in found        # it sent no alert: complete, then closed
    # its close_notify (an alert-sized record: the version is not in the capture) counts
    wire = Wire(handshake=False)
    wire.client.packet(0x02)
    for records in ((client_hello(),), (ccs(), app(53, b"f")), (app(97),), (app(19, b"c"),)):
        wire.client.send(*records, ack=0)
    wire.client.fin(ack=0, after=0.05)
    assert not any(code in ("close_during_handshake", "no_close_notify")
                   for code, _, _ in codes(wire.findings()))


def test_close_with_unread_data():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(100))
    wire.server.send(app(900), after=0.1)
    wire.client.ack()
    wire.client.fin(after=0.3)
    wire.client.rst(after=0.0001)
    (unread,) = [f for f in wire.findings() if f.code == "close_with_unread_data"]
    assert unread.severity == "medium" and unread.side == "client"
    assert unread.evidence["records_unread"] == 2 and unread.evidence["bytes_unread"] == 1010
    assert "reset_on_data_after_close" not in {f.code for f in wire.findings()}
    # answering the peer's own close with FIN and RST: not this
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(100), alert())
    wire.server.fin()
    wire.client.fin(after=0.01)
    wire.client.rst(after=0.0001)
    assert "close_with_unread_data" not in {f.code for f in wire.findings()}


def test_a_frame_missing_just_before_the_close_lowers_the_confidence():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(100))
    missing = app(100)
    wire.server.seq += len(missing)                 # a record the capture lost
    wire.client.fin(after=0.1)                      # its ACK covers it
    wire.server.send(app(300), after=0.2)
    wire.client.rst()
    (pending,) = [f for f in wire.findings() if f.code == "close_before_pending_records"]
    assert pending.confidence != "high"
    assert "does not hold" in pending.evidence["confidence_reason"]


def test_an_unseen_alert_acknowledged_by_the_peer_lowers_no_close_notify():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(300))
    wire.client.seq += 31                           # its close_notify, not captured
    wire.client.fin(after=0.05)
    wire.server.ack()                               # acknowledges the alert and the FIN
    wire.server.fin()
    (quiet,) = [f for f in wire.findings() if f.code == "no_close_notify" and f.side == "client"]
    assert quiet.confidence == "medium" and "31 bytes" in quiet.evidence["confidence_reason"]


# -- the facts read once are the facts as defined ------------------------------------------

def _sample_connections():
    from conftest import ended_connections
    return [conn for conn in ended_connections(sorted((ROOT / "samples").glob("*.pcap*")))
            if conn.is_tls]


def test_facts_kept_once_are_what_their_definitions_give():
    from pcap_tls_split.findings import Facts
    from pcap_tls_split.findings.facts import ends_on_boundary, last_received, records_of
    conns = _sample_connections()
    # and a close after a record that came in two segments
    wire = Wire()
    wire.tls12(request=app(40))
    body = app(2000, b"r")
    wire.server.send(body[:1000])
    wire.server.send(body[1000:])
    wire.client.fin(after=0.05)
    wire.server.fin()
    conns.append(wire.connection())
    closed = aligned = straddled = inside = 0
    for conn in conns:
        facts = Facts(conn)
        for side in (conn.a, conn.b):
            for complete_only in (False, True):
                assert facts.records(side, complete_only) == tuple(records_of(side, complete_only))
        if facts.closer is None:
            assert facts.position() == (None, None) and facts.inside is None
            continue
        closed += 1
        peer_records = list(facts.peer.records)
        received = last_received(peer_records, facts.reach)
        expected = (ends_on_boundary(facts.closer, peer_records),
                    None if received is None else received.straddling) if peer_records else (None, None)
        assert facts.position() == expected, conn.stream
        aligned += expected[0] is True
        straddled += expected[1] is True
        assert facts.inside == next((r for r in records_of(facts.peer)
                                     if r.offset < facts.reach < r.end), None)
        inside += facts.inside is not None
    # the samples have every case: closes on and off boundaries, after straddling
    # records, inside records
    assert closed > 20 and aligned and closed - aligned and straddled and inside
