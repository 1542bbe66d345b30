"""The TLS record tracker, byte by byte (sans-IO: bytes in, records out)."""

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pcap_tls_split.tls import wire as tls
from pcap_tls_split.tls.records import OFF, SYNC, RecordTracker

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# A TLS 1.3 server flight, as a side stream (hex, one layer a line):
SERVER_FLIGHT = bytes.fromhex(
    # record: handshake, version 3.3, length 0x3c (60)
    "16 0303 003c"
    # ServerHello, length 56: legacy_version 3.3, random (32 bytes)
    "02 000038 0303" + "11" * 32 +
    # session id length 0, cipher 0x1301, compression 0
    "00 1301 00"
    # extensions length 16: supported_versions (43) = 0x0304; key_share (51) 6 bytes
    "0010 002b 0002 0304 0033 0006 001d 0002 aabb"
    # record: change_cipher_spec, length 1
    "14 0303 0001 01"
    # record: application_data (encrypted handshake), length 40
    "17 0303 0028" + "5a" * 40 +
    # record: application_data, length 300
    "17 0303 012c" + "a5" * 300 +
    # record: application_data of alert size (19: an encrypted TLS 1.3 close_notify)
    "17 0303 0013" + "c3" * 19
)
SERVER_RECORDS = [(0, 22, 60), (65, 20, 1), (71, 23, 40), (116, 23, 300), (421, 23, 19)]

# A TLS 1.2 client flight: ClientHello, CCS, encrypted Finished, data, close_notify
CLIENT_FLIGHT = bytes.fromhex(
    # record: handshake, version 3.1, length 45; ClientHello length 41
    "16 0301 002d 01 000029 0303" + "22" * 32 +
    # session id 0, cipher suites length 2 (0xc02f), compression 1 (null)
    "00 0002 c02f 01 00"
    # record: change_cipher_spec
    "14 0303 0001 01"
    # record: handshake (encrypted Finished), length 40
    "16 0303 0028" + "77" * 40 +
    # record: application_data, length 100
    "17 0303 0064" + "88" * 100 +
    # record: alert in the clear: warning(1) close_notify(0)
    "15 0303 0002 0100"
)
CLIENT_RECORDS = [(0, 22, 45), (50, 20, 1), (56, 22, 40), (101, 23, 100), (206, 21, 2)]


def feed(stream, cuts=(), midstream=False, frames=None):
    """Feed ``stream`` cut at ``cuts``; chunk i is frame i+1 at time i."""
    tracker = RecordTracker(midstream=midstream)
    bounds = [0, *sorted(set(cuts)), len(stream)]
    out = []
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        if start < end:
            out += tracker.data(start, stream[start:end], i + 1, float(i))
    out += tracker.end()
    return out, tracker


def shape(records):
    return [(r.offset, r.type, r.length) for r in records]


@pytest.mark.parametrize("stream, expected", [(SERVER_FLIGHT, SERVER_RECORDS),
                                              (CLIENT_FLIGHT, CLIENT_RECORDS)],
                         ids=["server-tls13", "client-tls12"])
def test_whole_stream(stream, expected):
    records, tracker = feed(stream)
    assert shape(records) == expected
    assert [r.index for r in records] == list(range(len(expected)))
    assert all(r.frames == (1,) and not r.straddling for r in records)
    # all in one segment: each record shares it with its neighbours
    assert all(r.coalesced for r in records)
    assert tracker.partial is None and tracker.tls_start == 0


def test_contents_in_the_clear():
    records, tracker = feed(SERVER_FLIGHT)
    assert tracker.server_version == 0x0304 and tls.version_name(tracker.server_version) == "1.3"
    assert records[0].messages == (tls.SERVER_HELLO,)
    assert records[2].messages == ()  # encrypted after the change_cipher_spec
    records, tracker = feed(CLIENT_FLIGHT)
    assert tracker.client_hello and tracker.ccs_seen
    assert records[0].messages == (tls.CLIENT_HELLO,)
    assert records[2].messages == ()  # the Finished is encrypted
    assert records[4].alert == (1, 0)


@pytest.mark.parametrize("stream, expected", [(SERVER_FLIGHT, SERVER_RECORDS),
                                              (CLIENT_FLIGHT, CLIENT_RECORDS)],
                         ids=["server-tls13", "client-tls12"])
def test_byte_by_byte(stream, expected):
    records, tracker = feed(stream, cuts=range(1, len(stream)))
    assert shape(records) == expected
    for r in records:
        assert r.header_split and r.header_frames == 5
        assert len(r.frames) == 5 + r.length
        assert r.frames[0] == r.offset + 1 and r.frames[-1] == r.end
        assert r.segment_ends == tuple(range(r.offset + 1, r.end + 1))
        assert not r.coalesced
    assert tracker.server_version == (0x0304 if stream is SERVER_FLIGHT else None)


@pytest.mark.parametrize("stream, expected", [(SERVER_FLIGHT, SERVER_RECORDS),
                                              (CLIENT_FLIGHT, CLIENT_RECORDS)],
                         ids=["server-tls13", "client-tls12"])
def test_split_at_every_offset(stream, expected):
    for cut in range(1, len(stream)):
        records, _ = feed(stream, cuts=[cut])
        assert shape(records) == expected, cut
        for r in records:
            inside = r.offset < cut < r.end
            assert r.straddling == inside, (cut, r)
            assert r.header_split == (r.offset < cut < r.offset + 5), (cut, r)
            if inside:
                assert r.frames == (1, 2) and r.segment_ends == (cut, r.end)
        # a cut on a record boundary: the two records on each side of it do not share a segment
        boundary = [r for r in records if r.offset == cut]
        if boundary:
            before = records[boundary[0].index - 1]
            assert not before.coalesced or before.index == 0 or before.frames[0] == 1
        assert sum(r.header_split for r in records) == sum(r.offset < cut < r.offset + 5 for r in records)


def test_coalesced_only_when_sharing_a_segment():
    # one segment per record: none coalesced
    cuts = [o for o, _, _ in CLIENT_RECORDS[1:]]
    records, _ = feed(CLIENT_FLIGHT, cuts=cuts)
    assert not any(r.coalesced for r in records)
    # records 1 and 2 in one segment, the others alone
    records, _ = feed(CLIENT_FLIGHT, cuts=[50, 101, 206])
    assert [r.coalesced for r in records] == [False, True, True, False, False]


def test_starttls_prologue():
    prologue = b"220 mail.example ESMTP\r\nEHLO x\r\n250 STARTTLS\r\nSTARTTLS\r\n220 go ahead\r\n"
    stream = prologue + CLIENT_FLIGHT
    for cuts in ([], [len(prologue)], [len(prologue) + 3], [10, len(prologue) - 2, len(prologue) + 7]):
        records, tracker = feed(stream, cuts=cuts)
        assert tracker.tls_start == len(prologue)
        assert shape(records) == [(o + len(prologue), t, n) for o, t, n in CLIENT_RECORDS]


@pytest.mark.parametrize("step", [1, 5, 15, 16, 17, 40, 333, 1460])
@pytest.mark.parametrize("memoryview_chunks", [False, True])
def test_prologue_in_chunks_of_any_size(step, memoryview_chunks):
    """A plaintext prologue of a few segments (a proxy's CONNECT and its answer),
    then TLS: found where it starts, its records carried by the chunks they came in,
    whatever the chunks' size (shorter than the tail kept between two, as long, longer)
    and type (bytes, or views as a capture's read buffer gives)."""
    prologue = (b"CONNECT svc.example:443 HTTP/1.1\r\nHost: svc.example:443\r\n"
                b"Proxy-Authorization: Basic " + b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==" * 9 + b"\r\n\r\n"
                b"HTTP/1.1 200 Connection established\r\n\r\n")
    stream = prologue + CLIENT_FLIGHT
    tracker = RecordTracker()
    records = []
    for i, start in enumerate(range(0, len(stream), step)):
        chunk = stream[start:start + step]
        records += tracker.data(start, memoryview(chunk) if memoryview_chunks else chunk, i + 1, float(i))
    records += tracker.end()
    assert tracker.tls_start == len(prologue)
    assert shape(records) == [(o + len(prologue), t, n) for o, t, n in CLIENT_RECORDS]
    for r in records:
        assert r.frames == tuple(range(r.offset // step + 1, (r.end - 1) // step + 2)), r


def test_sslv2_compatible_hello_is_a_record_then_tls():
    # SSLv2 record header (2 bytes, high bit), CLIENT-HELLO (1), version 3.1,
    # cipher specs length 3, session id 0, challenge 16
    hello = bytes.fromhex("801c 01 0301 0003 0000 0010 00002f") + b"\x33" * 16
    assert len(hello) == 2 + 0x1c
    stream = hello + CLIENT_FLIGHT[50:]
    records, tracker = feed(stream, cuts=[3, 40])
    assert tracker.sslv2_hello == 0x0301 and tracker.client_hello
    first = records[0]
    assert (first.offset, first.type, first.length, first.header_length, first.end) == (
        0, "sslv2", 0x1c, 2, len(hello))
    assert first.frames == (1, 2)                 # its 30 bytes came in frames 1 and 2
    assert shape(records[1:]) == [(o - 50 + len(hello), t, n) for o, t, n in CLIENT_RECORDS[1:]]


def test_pure_sslv2_is_framed_as_sslv2_records():
    hello = bytes.fromhex("801c 01 0002 0003 0000 0010 010080") + b"\x33" * 16
    # then a 2-byte-header record of 20 bytes and a 3-byte-header one of 16 (4 of padding)
    encrypted = bytes.fromhex("8014") + b"e" * 20 + bytes.fromhex("0010 04") + b"p" * 16
    records, tracker = feed(hello + encrypted, cuts=[5, 31, 50])
    assert tracker.sslv2_hello == 0x0002 and tracker.mode == SYNC
    assert [(r.offset, r.type, r.length, r.header_length) for r in records] == [
        (0, "sslv2", 0x1c, 2), (30, "sslv2", 20, 2), (52, "sslv2", 16, 3)]
    # the server's SERVER-HELLO of a pure SSL 2.0 connection: SSLv2 framing too
    server_hello = bytes.fromhex("800e 04 00 01 0002 0000 0003 0010") + b"\x01\x00\x80"
    records, tracker = feed(server_hello + bytes.fromhex("8003") + b"xyz")
    assert [(r.type, r.length) for r in records] == [("sslv2", 14), ("sslv2", 3)]


def test_plain_text_is_not_tls():
    records, tracker = feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4000, cuts=range(1000, 100000, 1000))
    assert records == [] and tracker.tls_start is None and tracker.mode == OFF


def test_midstream_start_resynchronises():
    # the capture starts 30 bytes into the 300-byte record
    stream = SERVER_FLIGHT[116 + 30:]
    records, tracker = feed(stream, midstream=True, cuts=[100, 200])
    assert shape(records) == [(421 - 146, 23, 19)]
    assert records[0].frames == (3,)


def test_gap_inside_a_body_keeps_framing():
    tracker = RecordTracker()
    out = tracker.data(0, SERVER_FLIGHT[:150], 1, 0.0)
    out += tracker.gap(150, 100)
    out += tracker.data(250, SERVER_FLIGHT[250:], 2, 1.0)
    out += tracker.end()
    assert shape(out) == SERVER_RECORDS
    assert [r.missing for r in out] == [0, 0, 0, 100, 0]
    assert tracker.desyncs == 0


def test_gap_over_a_header_resynchronises():
    tracker = RecordTracker()
    out = tracker.data(0, SERVER_FLIGHT[:100], 1, 0.0)
    out += tracker.gap(100, 20)  # from inside record 2 through the next header
    tail = SERVER_FLIGHT[120:] + bytes.fromhex("17 0303 0005") + b"\x01" * 5 + bytes.fromhex("17 0303 0002") + b"zz"
    out += tracker.data(120, tail, 2, 1.0)
    out += tracker.end()
    offsets = [r.offset for r in out]
    assert offsets[:3] == [0, 65, 71] and out[2].missing == 16
    assert 116 not in offsets  # its header was in the hole
    assert 421 in offsets and offsets[-2:] == [445, 455]
    assert tracker.desyncs == 1


def test_nonsense_header_resynchronises():
    bad = b"\x99\x99\x99\x99\x99" + b"x" * 10
    records, tracker = feed(CLIENT_FLIGHT[:101] + bad + CLIENT_FLIGHT[101:])
    assert tracker.desyncs == 1
    assert [r.offset for r in records] == [0, 50, 56, 101 + len(bad), 206 + len(bad)]


def test_partial_record_at_the_end():
    records, tracker = feed(SERVER_FLIGHT[:200], cuts=[150])
    assert shape(records) == SERVER_RECORDS[:3]
    partial = tracker.partial
    assert partial is not None and not partial.complete
    assert (partial.offset, partial.type, partial.length, partial.received) == (116, 23, 300, 84)
    assert partial.frames == (1, 2)


def test_end_inside_a_header():
    records, tracker = feed(SERVER_FLIGHT[:118])
    assert tracker.partial.received == 2 and tracker.partial.offset == 116


def _records_stream(draw_sizes):
    parts = [bytes.fromhex("16 0303 0004 02000000")]  # an (empty) ServerHello
    for i, size in enumerate(draw_sizes):
        parts.append(bytes([23, 3, 3]) + size.to_bytes(2, "big") + bytes([i % 251]) * size)
    return b"".join(parts)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=12), data=st.data())
def test_any_segmentation_gives_the_same_records(sizes, data):
    stream = _records_stream(sizes)
    expected = shape(feed(stream)[0])
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=20))
    records, tracker = feed(stream, cuts=cuts)
    assert shape(records) == expected
    assert len(expected) == len(sizes) + 1
    cut_set = set(cuts)
    for r in records:
        assert r.header_split == any(r.offset < c < r.offset + 5 for c in cut_set)
        assert r.straddling == any(r.offset < c < r.end for c in cut_set)


def test_gap_after_a_header_cut_at_the_end_of_a_chunk():
    """While resynchronising, a candidate header cut by the chunk end, then a hole."""
    tracker = RecordTracker(midstream=True)
    out = tracker.data(0, b"\x00" * 10 + bytes.fromhex("170303"), 1, 0.0)
    assert tracker._candidates.as_list() == [(10, None, None)]
    out += tracker.gap(13, 99)
    out += tracker.data(112, SERVER_FLIGHT[116:], 2, 1.0)
    out += tracker.end()
    assert shape(out)[-1] == (421 - 116 + 112, 23, 19)


# -- the body in progress: in_body, skip_body, end_body_run ---------------------------------

def test_in_body_says_how_many_body_bytes_a_caller_may_skip():
    tracker = RecordTracker()
    first = tracker.data(0, CLIENT_FLIGHT[:101 + 5 + 10], 1, 0.0)   # 10 bytes into the data record
    assert [r.type for r in first] == [22, 20, 22]
    assert tracker.in_body(116) == 90
    assert tracker.in_body(115) == 0                   # not where the tracker is
    tracker.skip_body(116, 40, 2, 1.0)
    assert tracker.in_body(156) == 50
    # a run of three more segments handed back at once: as if skipped one by one
    tracker.end_body_run([3, 4, 5], [166, 176, 186], 186, 20, 4.0)
    records = first + tracker.data(186, CLIENT_FLIGHT[186:], 6, 5.0) + tracker.end()
    data = [r for r in records if r.type == 23][0]
    assert data.frames == (1, 2, 3, 4, 5, 6) and data.segment_ends == (116, 156, 166, 176, 186, 206)
    assert data.first_time == 0.0 and data.last_time == 5.0


def test_a_body_that_is_read_is_never_skipped():
    tracker = RecordTracker()
    tracker.data(0, CLIENT_FLIGHT[:20], 1, 0.0)        # inside the ClientHello, which is parsed
    assert tracker.in_body(20) == 0


# -- the hellos in clear: random, server name, ALPN, cipher ---------------------------------

def test_hellos_give_random_server_name_alpn_and_cipher():
    sni = b"api.example.com"
    server_name = (len(sni) + 3).to_bytes(2, "big") + b"\x00" + len(sni).to_bytes(2, "big") + sni
    alpn = b"\x00\x0c\x02h2\x08http/1.1"
    extensions = (b"\x00\x00" + len(server_name).to_bytes(2, "big") + server_name
                  + b"\x00\x10" + len(alpn).to_bytes(2, "big") + alpn)
    body = (b"\x03\x03" + b"\x42" * 32 + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
            + len(extensions).to_bytes(2, "big") + extensions)
    # record: handshake, version 3.1; ClientHello
    hello = (bytes.fromhex("160301") + (len(body) + 4).to_bytes(2, "big") + b"\x01"
             + len(body).to_bytes(3, "big") + body)
    for cuts in ((), (7,), (20, 60)):                 # the hello whole, or over several segments
        records, tracker = feed(hello, cuts)
        assert (tracker.client_random, tracker.sni, tracker.alpn_offered) == (
            b"\x42" * 32, "api.example.com", ("h2", "http/1.1"))
        assert records[0].messages == (tls.CLIENT_HELLO,)
    records, tracker = feed(SERVER_FLIGHT)
    assert tracker.cipher == 0x1301 and tracker.alpn is None


def test_a_real_hello_pair(monkeypatch):
    import pcap_tls_split
    from pcap_tls_split.api import FileRun
    trackers = {}
    ended = FileRun.connection_ended

    def noted(self, conn):
        trackers.update({conn.role(s): s.tracker for s in (conn.a, conn.b)})
        return ended(self, conn)

    monkeypatch.setattr(FileRun, "connection_ended", noted)
    pcap_tls_split.analyze(str(SAMPLES / "field-bug-tls12.pcap"))
    assert trackers["client"].sni == "localhost" and len(trackers["client"].client_random) == 32
    assert trackers["server"].cipher == 0xC030      # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384


def test_tls_start_finds_what_the_pattern_search_finds():
    import random
    rng = random.Random(7)
    # the pattern's bytes and their neighbours, so that near-misses are common
    pieces = [b"\x16\x03", b"\x15\x03", b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05",
              b"\x16", b"\x15", b"\x00\x02", b"x"]
    found = 0
    for _ in range(20000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 24)))
        match = tls.TLS_START.search(data)
        assert tls.tls_start(data) == (match.start() if match else -1), data
        if len(data) % 7 == 0:
            assert tls.tls_start(memoryview(data)) == tls.tls_start(bytearray(data)) == tls.tls_start(data)
        found += match is not None
    assert 500 < found < 19500                  # both outcomes, many times
    hello = bytes.fromhex("160301 00c8 01 0000c4")
    alert = bytes.fromhex("150303 0002")
    for prologue in (b"", b"EHLO x\r\n250 STARTTLS\r\n", bytes(range(256)) * 3):
        assert tls.tls_start(prologue + hello) == len(prologue)
        assert tls.tls_start(prologue + alert + hello) == len(prologue)
        assert tls.tls_start(prologue) == -1


def test_a_handshake_reader_is_between_messages_only_when_it_holds_nothing():
    """``HandshakeReader.between_messages``: a new reader is the same (the record
    tracker lets its reader go then, and makes a new one with the next bytes)."""
    from pcap_tls_split.tls.wire import HandshakeReader
    finished = bytes([20, 0, 0, 4]) + b"abcd"            # a 4-byte message body
    reader = HandshakeReader()
    assert reader.between_messages()
    for cut in range(1, len(finished)):                   # a header or a body cut short
        reader = HandshakeReader()
        started = reader.feed(finished[:cut])
        assert started == ([(20, None)] if cut >= 4 else [])
        assert not reader.between_messages()
        reader.feed(finished[cut:])
        assert reader.between_messages()
    reader = HandshakeReader()
    assert reader.feed(finished * 2) == [(20, None), (20, None)] and reader.between_messages()
