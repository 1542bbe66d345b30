"""Connections and the connection table (pcap_tls_split/tcp/connection.py, table.py)."""

from conftest import ended_connections
from pcap_tls_split.frame import ACK, FIN, PSH, SYN
from pcap_tls_split.tcp import ConnectionTable, Entry, SegmentEnd
from pcap_tls_split.tcp.connection import RECENT_SEGMENTS, RUN, Side, _last_received
from pcap_tls_split.tcp.table import wire_key
from playbook import CLIENT_ADDR, CLIENT_PORT, SERVER_ADDR, SERVER_PORT, Wire, app, client_hello


def test_stream_numbers_in_order_of_first_packet_and_port_reuse_opens_a_new_one():
    ended = []
    table = ConnectionTable(ended.append)
    a, b = CLIENT_ADDR, SERVER_ADDR
    table.packet(1, 1.0, a, b, 40000, 443, 100, 0, SYN, b"", 0)
    table.packet(2, 1.1, a, b, 40001, 443, 200, 0, SYN, b"", 0)
    table.packet(3, 1.2, b, a, 443, 40000, 900, 101, SYN | ACK, b"", 0)
    table.packet(4, 9.0, a, b, 40000, 443, 7777, 0, SYN, b"", 0)      # another ISN: a new connection
    table.finish()
    assert sorted((c.stream, c.a.port, c.end_reason) for c in ended) == [
        (0, 40000, "port reuse"), (1, 40001, "end of capture"), (2, 40000, "end of capture")]
    assert table.streams == 3


def test_entries_by_addresses_and_by_wire_key_are_the_same():
    wire = Wire()
    entry = wire.table.entry(wire_key(CLIENT_ADDR, CLIENT_PORT, SERVER_ADDR, SERVER_PORT))
    assert isinstance(entry, Entry) and entry.side.port == CLIENT_PORT and entry.peer.port == SERVER_PORT
    assert wire.table.find(CLIENT_ADDR, CLIENT_PORT, SERVER_ADDR, SERVER_PORT) is entry
    back = wire.table.find(SERVER_ADDR, SERVER_PORT, CLIENT_ADDR, CLIENT_PORT)
    assert back.connection is entry.connection and back.side is entry.peer and back.peer is entry.side
    assert wire.table.find(CLIENT_ADDR, CLIENT_PORT + 1, SERVER_ADDR, SERVER_PORT) is None


def test_roles_from_the_syn_else_the_client_hello_else_the_higher_port():
    wire = Wire()
    assert wire.connection().client.port == CLIENT_PORT and not wire.connection().role_inferred
    # no SYN seen: the ClientHello's sender is the client, even from the lower port
    wire = Wire(handshake=False)
    wire.server.send(b"")                      # the server's packet comes first
    wire.client.send(client_hello())
    conn = wire.connection()
    assert conn.client.port == CLIENT_PORT and not conn.role_inferred and conn.midstream
    # neither: the higher port
    wire = Wire(handshake=False)
    wire.server.send(app(10))
    conn = wire.connection()
    assert conn.client.port == CLIENT_PORT and conn.role_inferred


def test_a_close_notes_its_reach_and_the_last_segment_received():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.server.send(app(100))
    wire.server.send(app(100))
    wire.client.fin(ack=wire.server.sent - 105)       # had the first of the two
    conn = wire.connection()
    close = conn.client.close
    assert close.kind == "fin" and not close.reach_estimated
    assert close.reach == wire.server.sent - 105
    assert isinstance(conn.client.close_peer_segment, SegmentEnd)
    assert conn.client.close_peer_segment.end == close.reach
    assert conn.client.fin.frame == close.frame


def test_a_side_keeps_its_last_data_segments_within_a_bound():
    side = Side(CLIENT_ADDR, CLIENT_PORT)
    assert side.recent_segments() == [] and _last_received(side.segments, 10**9) is None
    n = 5 * RECENT_SEGMENTS + 7
    for i in range(n):                        # one by one, and then in runs
        side.note_segment(i + 1, 100.0 + i, 1000 * (i + 1))
    frames = list(range(n + 1, n + 700))
    side.note_segments(frames[:3], [100.0 + f - 1 for f in frames[:3]], [1000 * f for f in frames[:3]])
    side.note_segments(frames[3:], [100.0 + f - 1 for f in frames[3:]], [1000 * f for f in frames[3:]])
    last = n + 699
    while len(side.segments) <= 3 * (RECENT_SEGMENTS + 10):   # older ones stored, not counted
        last += 1
        side.note_segment(last, 100.0 + last - 1, 1000 * last)
    kept = side.recent_segments()
    assert kept == [SegmentEnd(f, 100.0 + f - 1, 1000 * f)
                    for f in range(last - RECENT_SEGMENTS + 1, last + 1)]
    assert all(isinstance(s.frame, int) and isinstance(s.end, int) for s in kept)
    assert len(side.segments) <= 2 * 3 * RECENT_SEGMENTS     # bounded, however many came
    # the close's last segment received: among the kept ones only, as a SegmentEnd
    assert _last_received(side.segments, 1000 * (last - 10) + 999) == kept[-11]
    assert _last_received(side.segments, 1000 * (last - RECENT_SEGMENTS + 1)) == kept[0]
    assert _last_received(side.segments, 1000 * (last - RECENT_SEGMENTS + 1) - 1) is None


def test_idle_connections_are_finished_and_freed():
    """A connection idle past the timeout is finished while the capture goes on."""
    ended = []
    table = ConnectionTable(ended.append, idle_timeout=60)
    a, b = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    table.packet(1, 1000.0, a, b, 40000, 443, 100, 0, SYN, b"", 0)
    for frame in range(2, 20000):  # other traffic goes on for an hour
        table.packet(frame, 1000.0 + frame * 0.2, a, b, 40001, 443, 5000 + frame, 0, ACK, b"", 0)
    assert [c.stream for c in ended] == [0]
    assert ended[0].end_reason == "idle"
    assert len(table.connections()) == 1


def test_a_connection_woken_after_the_idle_timeout_keeps_its_stream_and_roles():
    ended = []
    table = ConnectionTable(ended.append, idle_timeout=60)
    a, b = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    table.packet(1, 1000.0, a, b, 40000, 443, 100, 0, SYN, b"", 0)          # SYN from the client
    table.packet(2, 1000.1, b, a, 443, 40000, 900, 101, SYN | ACK, b"", 0)  # SYN-ACK
    for frame in range(3, 20000):                                           # other traffic, an hour
        table.packet(frame, 1000.0 + frame * 0.2, a, b, 40001, 443, 5000 + frame, 0, ACK, b"", 0)
    table.packet(20000, 5000.0, b, a, 443, 40000, 901, 101, ACK, b"late", 0)  # the server wakes
    table.finish()
    first, woken, other = sorted(ended, key=lambda c: (c.stream, c.continued))
    assert (first.stream, woken.stream, woken.continued) == (0, 0, True)
    assert woken.client.port == 40000 and not woken.role_inferred
    assert table.streams == 2


def _two_tables():
    """The same connection up to the middle of a 4000-byte record body, twice."""
    wires = []
    for _ in range(2):
        wire = Wire()
        wire.tls12(request=app(40))
        wire.server.send(app(4000)[:1000])
        wires.append(wire)
    return wires


def test_segment_in_order_does_what_packet_does_and_says_when_a_run_may_go_on():
    by_packet, in_order = _two_tables()
    body = app(4000)[1000:]
    entry = in_order.table.entry(wire_key(SERVER_ADDR, SERVER_PORT, CLIENT_ADDR, CLIENT_PORT))
    for i in range(3):
        chunk = body[i * 1000:(i + 1) * 1000 if i < 2 else None]
        by_packet.server.send(chunk)
        in_order.frame += 1
        in_order.time += 0.001
        seq = in_order.server.seq
        buf = b"\0" * 7 + chunk
        done = entry.connection.segment_in_order(entry.side, entry.peer, buf, 7, len(chunk), seq,
                                                 in_order.client.seq, ACK | PSH, in_order.frame,
                                                 in_order.time)
        in_order.server.seq += len(chunk)
        assert done == (RUN if i < 2 else True)     # the last segment completes the record
    a, b = by_packet.connection(), in_order.connection()
    for side in ("a", "b"):
        assert getattr(a, side).counters() == getattr(b, side).counters()
    # a segment out of order is not taken
    wire = Wire()
    wire.tls12()
    entry = wire.table.entry(wire_key(SERVER_ADDR, SERVER_PORT, CLIENT_ADDR, CLIENT_PORT))
    assert entry.connection.segment_in_order(entry.side, entry.peer, b"x" * 10, 0, 10,
                                             wire.server.seq + 5, wire.client.seq, ACK, 99, 2000.0) is False


def test_a_run_handed_back_with_end_run_leaves_the_state_packet_would():
    by_packet, by_run = _two_tables()
    body = app(4000)[1000:]
    chunks = [body[i * 500:(i + 1) * 500] for i in range(4)]      # inside the body: 3000 left
    for chunk in chunks:
        by_packet.server.send(chunk)
    entry = by_run.table.entry(wire_key(SERVER_ADDR, SERVER_PORT, CLIENT_ADDR, CLIENT_PORT))
    side = entry.side
    frames, ends, times = [], [], []
    left = side.tracker.in_body(side.stream.next)
    end = side.stream.next
    for chunk in chunks:
        by_run.frame += 1
        by_run.time += 0.001
        end += len(chunk)
        left -= len(chunk)
        frames.append(by_run.frame)
        ends.append(end)
        times.append(by_run.time)
    entry.connection.end_run(side, frames, ends, times, left)
    by_run.server.seq += 2000
    countdown, _ = by_run.table.run_budget()
    by_run.table.end_run(countdown - 4, by_run.time)
    for wire in (by_packet, by_run):
        wire.server.send(body[2000:])
        wire.client.fin()
    a, b = by_packet.connection(), by_run.connection()
    assert a.server.counters() == b.server.counters() and a.client.counters() == b.client.counters()
    assert [r.frames for r in a.server.records] == [r.frames for r in b.server.records]


def test_late_packets_of_an_ended_connection_are_dropped():
    wire = Wire()
    wire.tls12(request=app(40))
    wire.client.fin()
    wire.server.fin()
    wire.client.ack(after=5.0)                   # past the linger: the connection ends
    wire.server.send(app(10), after=0.1, flags=ACK | PSH | FIN)
    wire.table.finish()
    assert len(wire.ended) == 1 and wire.table.late_packets >= 1


# -- Wireshark's numbering rules, on captures written packet by packet, checked with tshark --

import pytest  # noqa: E402

import captures  # noqa: E402
import pcap_tls_split  # noqa: E402
import tshark_ref  # noqa: E402
from captures import icmp_unreachable, ip4, tcp  # noqa: E402

A, B, ROUTER = "10.0.0.1", "10.0.0.2", "10.0.0.254"
SYN_, SYNACK, ACK_, RST_ACK, PSH_ACK = 0x02, 0x12, 0x10, 0x14, 0x18


def client(seq, ack=0, flags=SYN_, payload=b"", port=40000):
    return ip4(A, B, 6, tcp(port, 443, seq, ack, flags, payload))


def server(seq, ack, flags=SYNACK, payload=b"", port=40000):
    return ip4(B, A, 6, tcp(443, port, seq, ack, flags, payload))


NUMBERING = {
    # a handshake retried after the server's RST with the same initial sequence
    # number stays in its stream, even seconds later; another ISN is a new one
    "syn-after-rst": [client(1000), server(0, 1001, RST_ACK), (1010.0, client(1000)),
                      server(7000, 1001), client(1001, 7001, ACK_), (3000.0, client(1000, 7001)),
                      client(3000)],
    # two SYN-ACKs with different initial sequence numbers: one stream
    "two-syn-acks": [client(1000), server(7000, 1001), server(9000, 1001), client(1001, 9001, ACK_),
                     server(9001, 1001, PSH_ACK, b"hello")],
    # a TCP header quoted in an ICMP error takes a stream number, and the connection
    # it names keeps it when its own packets come (with another sequence number too)
    "icmp-quote": [ip4(ROUTER, A, 1, icmp_unreachable(client(1000)[:40])),
                   client(5000, port=40001), client(1001), server(7000, 1002)],
    # one absurd timestamp (a year 2061 SYN-ACK) does not split the connection
    "absurd-timestamp": [client(1000), (2900000000.0, server(7000, 1001)), (1000.02, client(1001, 7001, ACK_)),
                         (1000.03, client(1001, 7001, PSH_ACK, b"x" * 10))],
}


@pytest.mark.parametrize("case", sorted(NUMBERING))
def test_stream_numbers_follow_wiresharks_rules(case, tmp_path, tshark):
    path = tmp_path / f"{case}.pcap"
    captures.write_packets(path, NUMBERING[case])
    theirs = tshark_ref.tshark_streams(path, tshark=tshark)
    ended = []
    table = ConnectionTable(ended.append)
    ended_connections([path], table)
    assert table.connection_count == len(theirs)
    assert {c.stream for c in ended} == set(theirs)
    for conn in ended:
        _, a, b = theirs[conn.stream]
        assert {conn.a.endpoint, conn.b.endpoint} == {a, b}
    if case == "two-syn-acks":
        (conn,) = ended
        assert conn.server.stream.next == 5        # its bytes counted from the second SYN-ACK
    if case == "absurd-timestamp":
        assert len(ended) == 1 and ended[0].end_reason == "end of capture"
    report = pcap_tls_split.analyze(str(path), all_connections=True)
    assert report.inputs[0].tcp_connections == len(theirs)


def test_a_second_syn_ack_the_client_never_took_is_ignored():
    """KakaoTalk's case: the client had acknowledged the first SYN-ACK; a second with
    another ISN comes, and the server's data follows the first."""
    ended = []
    table = ConnectionTable(ended.append)
    a, b = CLIENT_ADDR, SERVER_ADDR
    table.packet(1, 1.0, a, b, 40000, 443, 1000, 0, SYN, b"", 0)
    table.packet(2, 1.1, b, a, 443, 40000, 7000, 1001, SYN | ACK, b"", 0)
    table.packet(3, 1.2, a, b, 40000, 443, 1001, 7001, ACK, b"", 0)
    table.packet(4, 1.3, b, a, 443, 40000, 9000, 1001, SYN | ACK, b"", 0)
    table.packet(5, 1.4, b, a, 443, 40000, 7001, 1001, ACK | PSH, b"data!", 0)
    table.finish()
    (conn,) = ended
    assert conn.server.stream.next == 5 and conn.server.stream.gaps == 0


def test_socks_spends_a_stream_number_at_the_first_proxied_payload():
    from pcap_tls_split.tcp.socks import SocksWatch
    watch = SocksWatch(client_is_a=True)
    steps = [(True, b"\x05\x01\x00"), (False, b"\x05\x00"),
             (True, b"\x05\x01\x00\x01" + bytes(4) + b"\x01\xbb"),
             (False, b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")]
    assert [watch.payload(*step) for step in steps] == [False] * 4 and not watch.done
    assert watch.payload(True, b"\x16\x03\x01...") is True and watch.done
    other = SocksWatch(client_is_a=True)
    assert other.payload(True, b"GET / HTTP/1.1\r\n") is False and other.done


def test_a_socks_connection_takes_the_steps_until_its_handshake_is_over():
    """The fused packet loop finds a connection by ``entry``; one in a SOCKS handshake
    must not be found there (its packets take ``place``, which watches the
    handshake), and is once the proxied connection's first payload came."""
    table = ConnectionTable(lambda conn: None)
    a, b, port = CLIENT_ADDR, SERVER_ADDR, 1080
    table.packet(1, 1.0, a, b, 40000, port, 100, 0, SYN, b"", 0)
    table.packet(2, 1.1, b, a, port, 40000, 900, 101, SYN | ACK, b"", 0)
    both = (wire_key(a, 40000, b, port), wire_key(b, port, a, 40000))
    assert [table.entry(wire) for wire in both] == [None, None]
    assert table.find(a, 40000, b, port).side.port == 40000
    seq = {a: 101, b: 901}
    for frame, (sender, payload) in enumerate([
            (a, b"\x05\x01\x00"), (b, b"\x05\x00"), (a, b"\x05\x01\x00\x01" + bytes(4) + b"\x01\xbb"),
            (b, b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00"), (a, client_hello())], 3):
        assert table.entry(both[0]) is None
        other = b if sender == a else a
        sport, dport = (40000, port) if sender == a else (port, 40000)
        table.packet(frame, 1.0 + frame / 10, sender, other, sport, dport, seq[sender], seq[other],
                     ACK | PSH, payload, 0)
        seq[sender] += len(payload)
    assert [table.entry(wire) for wire in both] == [table.find(a, 40000, b, port), table.find(b, port, a, 40000)]
    assert table.streams == 2          # one spent for the proxied connection
    table.finish()
    assert table.find(a, 40000, b, port) is None and table.entry(both[0]) is None
