"""Re-segmented, reordered and duplicated segments give the same records and findings.

The connections are real ones (the captures in samples/); hypothesis rewrites
their TCP segments the way networks and capturers do, and the analysis of the
rewritten segments must match the analysis of the original.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pcap_tls_split import findings
from pcap_tls_split.capture import open_capture
from pcap_tls_split.connection import ConnectionTable
from pcap_tls_split.frame import decode
from pcap_tls_split.reassembly import FIN, RST, SYN, SideStream, DATA, GAP

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
NAMES = ["field-bug-tls12.pcap", "field-bug-tls13.pcap", "half-record.pcap",
         "server-truncates.pcap", "split-header.pcap"]


def segments_of(path):
    """The TCP segments of a capture as dicts (time, addresses, seq, ack, flags, payload)."""
    out = []
    with open_capture(str(path)) as capture:
        for _, time, linktype, data, orig_len in capture.frames():
            seg = decode(linktype, data, orig_len)
            if seg is None:
                continue
            src, dst, sport, dport, seq, ack, flags, _, payload, missing = seg
            out.append(dict(time=time, src=src, dst=dst, sport=sport, dport=dport, seq=seq,
                            ack=ack, flags=flags, payload=bytes(payload), missing=missing))
    return out


def analyse(segments):
    """Records per side and the findings of each connection of these segments."""
    ended = []
    table = ConnectionTable(ended.append)
    for frame, s in enumerate(segments, 1):
        table.packet(frame, s["time"], s["src"], s["dst"], s["sport"], s["dport"], s["seq"],
                     s["ack"], s["flags"], s["payload"], s["missing"])
    table.finish()
    result = []
    for conn in ended:
        sides = {}
        for side in (conn.a, conn.b):
            kept = [(r.offset, r.type, r.length) for r in side.records]
            sides[conn.role(side)] = (side.total, kept[-20:])
        codes = sorted((f.code, f.side, f.severity) for f in findings.evaluate(conn))
        result.append((conn.stream, sides, codes))
    return result


def split(segment, cuts):
    """The segment cut into pieces at the given payload offsets."""
    payload = segment["payload"]
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(payload)}), len(payload)]
    pieces = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        piece = dict(segment, payload=payload[a:b], seq=(segment["seq"] + a) & 0xFFFFFFFF)
        if i < len(bounds) - 2:
            piece["flags"] = segment["flags"] & ~(FIN | RST)
        pieces.append(piece)
    return pieces


@st.composite
def rewrites(draw, segments):
    out = []
    for seg in segments:
        if seg["payload"] and not seg["flags"] & (SYN | RST):
            cuts = draw(st.lists(st.integers(1, max(1, len(seg["payload"]) - 1)), max_size=3))
            out += split(seg, cuts)
        else:
            out.append(seg)
    # swap some adjacent data segments of the same direction (capture reordering)
    for i in draw(st.lists(st.integers(0, len(out) - 2), max_size=4)):
        a, b = out[i], out[i + 1]
        if a["payload"] and b["payload"] and a["src"] == b["src"] and a["sport"] == b["sport"] \
                and not (a["flags"] | b["flags"]) & (FIN | RST | SYN):
            out[i], out[i + 1] = b, a
    # duplicate some data segments a little later (retransmissions)
    for i in sorted(draw(st.lists(st.integers(0, len(out) - 1), max_size=4)), reverse=True):
        seg = out[i]
        if seg["payload"] and not seg["flags"] & (SYN | RST | FIN):
            out.insert(min(len(out), i + 2), dict(seg))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_rewritten_segments_keep_records_and_findings(name):
    segments = segments_of(SAMPLES / name)
    expected = analyse(segments)
    assert expected and expected[0][1]["server"][0] > 0, "the sample should have server records"

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rewritten=rewrites(segments))
    def check(rewritten):
        assert analyse(rewritten) == expected

    check()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), st_data=st.data())
def test_reassembly_delivers_each_byte_once_in_order(data, st_data):
    """Any segmentation, order and duplication: the same bytes, in order, each once."""
    isn = st_data.draw(st.integers(0, 0xFFFFFFFF))
    cuts = sorted(set(st_data.draw(st.lists(st.integers(1, len(data)), max_size=30))) | {len(data)})
    segments, start = [], 0
    for end in cuts:
        if end > start:
            segments.append((start, data[start:end]))
            start = end
    order = st_data.draw(st.permutations(segments))
    dups = st_data.draw(st.lists(st.sampled_from(segments), max_size=5))
    side = SideStream()
    out = bytearray()
    side.segment(isn, SYN, b"", 1, 0.0)
    for frame, (offset, chunk) in enumerate(list(order) + dups, 2):
        for event in side.segment((isn + 1 + offset) & 0xFFFFFFFF, 0x10, chunk, frame, 0.0):
            assert event[0] == DATA and event[1] == len(out)
            out += event[2]
    for event in side.finish():
        assert event[0] != GAP
    assert bytes(out) == data


def test_an_ack_captured_before_the_data_it_acknowledges_is_no_gap():
    """Merged or multi-queue captures can show the ACK of a segment before the segment."""
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    got = list(side.segment(1001 + 100, 0x10, b"B" * 100, 2, 0.0))  # held: the hole is 0-100
    got += side.acked(1001 + 200)                                   # the peer ACKs A and B
    got += side.segment(1001, 0x10, b"A" * 100, 3, 0.0)             # then A arrives
    got += side.finish()
    assert [e[0] for e in got] == [DATA, DATA] and side.gaps == 0
    assert b"".join(e[2] for e in got) == b"A" * 100 + b"B" * 100
    # when the hole stays, further ACKs past it make it a gap
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    side.segment(1001 + 100, 0x10, b"B" * 100, 2, 0.0)
    events = []
    for _ in range(5):
        events += side.acked(1001 + 200)
    assert events[0] == (GAP, 0, 100) and side.gaps == 1


def test_first_seen_wins_among_held_segments():
    """Held A at 100-150, then a different B at 90-190: bytes 100-150 stay A's, B's are a conflict."""
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    side.segment(1001 + 100, 0x10, b"A" * 50, 2, 0.0)
    side.segment(1001 + 90, 0x10, b"B" * 100, 3, 0.0)
    events = list(side.segment(1001, 0x10, b"C" * 90, 4, 0.0))
    data = b"".join(e[2] for e in events)
    assert data == b"C" * 90 + b"B" * 10 + b"A" * 50 + b"B" * 40
    frames = [(e[1], e[3]) for e in events]
    assert frames == [(0, 4), (90, 3), (100, 2), (150, 3)]
    assert side.conflicts == 1 and side.gaps == 0
