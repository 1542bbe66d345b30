"""The public corpus (../shared/corpus): every file analysed, and Wireshark agrees.

Wireshark's tshark is the reference for record boundaries: for every TCP
stream and direction where tshark dissects TLS records, the sequence of
(content type, length) we find must be the same. Where the two legitimately
differ, the difference is listed in KNOWN_DIFFERENCES with its reason.
"""

from collections import defaultdict

import pytest

import pcap_tls_split
from conftest import corpus_files

import tshark_ref

FILES = corpus_files()


def _id(path):
    return path.name


# (file name, stream, src endpoint or None for both directions) -> why we differ from tshark
KNOWN_DIFFERENCES = {
    ("tls__tls1.2-late-protocol-error.pcap", 0, "10.0.0.80:56637"):
        "the client's change_cipher_spec header is corrupted to 14 ff ff ff 01 (version ff.ff, "
        "length 65281): tshark waits for 65281 bytes that never come and drops the client's last "
        "three records; a record header must have version major 3, so we resynchronise on them",
    ("443-opvn.pcap", 0, None):
        "OpenVPN over TCP (port 1194): the TLS handshake travels in OpenVPN control packets, "
        "cut by their headers; Wireshark's OpenVPN dissector reassembles it, we find TLS by "
        "content and analyze does not count the connection as TLS (its framing keeps breaking)",
    ("KakaoTalk_chat.pcap", 2, "173.252.97.2:443"):
        "two SYN-ACKs with different initial sequence numbers, the second after the client had "
        "acknowledged the first and then kept acknowledging it: Wireshark numbers the server's "
        "bytes from the second and shows none of its records; we keep the one the client "
        "acknowledged, and find its handshake and data",
    ("websocket__wstunnel-https.pcap", 0, None):
        "the TLS connection is tunnelled inside WebSocket frames: the records command finds the "
        "tunnelled records by content, cut by the WebSocket frame headers, and analyze does not "
        "count the connection as TLS (framing lost 10 times); tshark dissects WebSocket",
}

# file name -> why our tcp.stream numbers differ from Wireshark's
KNOWN_STREAM_DIFFERENCES = {}


def test_corpus_is_present(corpus):
    assert FILES, f"no capture in {corpus}"


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_every_file_is_analysed(path):
    report = pcap_tls_split.analyze(str(path), all_connections=True)
    (inp,) = report.inputs
    assert inp.format in ("pcap", "pcapng"), inp.errors
    for error in inp.errors:
        assert "internal error" not in error, error


def our_records(path):
    """{(stream, src): [RecordRow, ...]} of the complete records we find, in stream
    order (a connection reported in pieces, after an idle timeout, piece by piece)."""
    found = defaultdict(list)
    for row in pcap_tls_split.records(str(path)):
        if row.complete:
            found[(row.stream, row.src)].append(row)
    return found


def shape(row):
    """(content type, length) of a record; an SSLv2-format one by its whole size, as
    Wireshark shows no length for encrypted SSLv2 records."""
    if row.type == "sslv2":
        return ("sslv2", row.header_length + row.length)
    return (row.type, row.length)


def their_shape(record):
    kind, length = record
    return ("sslv2", length + 2) if kind is None else record


def agrees(rows, theirs, gaps):
    """Our records of a direction agree with Wireshark's: the same, or (the capture
    left ``gaps`` holes in that connection) Wireshark's stop where the capture has a
    hole (inside the next record, or before it) and ours carry on past it."""
    mine = [shape(r) for r in rows]
    if mine == theirs:
        return True
    k = len(theirs)
    if not gaps or len(mine) <= k or mine[:k] != theirs:
        return False
    after = rows[k]
    before = rows[k - 1] if k else None
    return bool(after.missing) or (
        before is not None and after.offset != before.offset + before.header_length + before.length)


def _renumber(path, theirs, tshark):
    """tshark's records keyed by our stream numbers, matching connections by endpoints."""
    report = pcap_tls_split.analyze(str(path), all_connections=True)
    ours = {frozenset((c.client, c.server)): c.stream for c in report.connections}
    mapping = {stream: ours.get(frozenset((a, b)), -1 - stream)
               for stream, (_, a, b) in tshark_ref.tshark_streams(path, tshark=tshark).items()}
    return {(mapping.get(stream, stream), src): rows for (stream, src), rows in theirs.items()}


def tls_ports(path, streams):
    """Server ports of these streams, where we found TLS."""
    report = pcap_tls_split.analyze(str(path), all_connections=True)
    return sorted({int(c.server.rsplit(":", 1)[1]) for c in report.connections if c.stream in streams})


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_stream_numbers_match_tshark(path, tshark):
    theirs = tshark_ref.tshark_streams(path, tshark=tshark)
    report = pcap_tls_split.analyze(str(path), all_connections=True)
    assert report.inputs[0].tcp_connections == len(theirs)
    if path.name in KNOWN_STREAM_DIFFERENCES:
        # the same connections, in the same order, under other numbers
        by_endpoints = {frozenset((a, b)): stream for stream, (_, a, b) in theirs.items()}
        mapped = [by_endpoints[frozenset((c.client, c.server))] for c in report.connections]
        assert mapped == sorted(mapped) and mapped != [c.stream for c in report.connections], \
            KNOWN_STREAM_DIFFERENCES[path.name]
        return
    for conn in report.connections:
        assert conn.stream in theirs
        _, a, b = theirs[conn.stream]
        assert {conn.client, conn.server} == {a, b}, conn.stream


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_record_boundaries_match_tshark(path, tshark):
    ours = our_records(path)
    theirs = tshark_ref.tshark_records(path, tshark=tshark, include_sslv2=True)
    # TLS on ports Wireshark does not give to TLS (or to a STARTTLS protocol it
    # follows): decode those ports as TLS, for the streams tshark did not dissect
    dissected = {stream for stream, _ in theirs}
    missing = {stream for stream, _ in ours if stream not in dissected}
    if missing:
        decoded = tshark_ref.tshark_records(path, tls_ports=tls_ports(path, missing), tshark=tshark,
                                            include_sslv2=True)
        theirs.update({key: value for key, value in decoded.items() if key[0] in missing})
    if path.name in KNOWN_STREAM_DIFFERENCES:
        theirs = _renumber(path, theirs, tshark)
    gaps = defaultdict(int)
    for conn in pcap_tls_split.analyze(str(path), all_connections=True).connections:
        gaps[conn.stream] += conn.quality.gaps
    differences = []
    for key in sorted(set(ours) | set(theirs)):
        if agrees(ours.get(key, []), [their_shape(r) for r in theirs.get(key, [])], gaps[key[0]]):
            continue
        stream, src = key
        if (path.name, stream, src) in KNOWN_DIFFERENCES or (path.name, stream, None) in KNOWN_DIFFERENCES:
            continue
        differences.append((key, [shape(r) for r in ours.get(key, [])][:8], theirs.get(key, [])[:8]))
    assert not differences, differences
