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
from pcap_tls_split.tcp import ConnectionTable
from pcap_tls_split.frame import decode
from pcap_tls_split.frame import FIN, RST, SYN

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
        codes = sorted((f.code, f.side, f.severity) for f in findings.evaluate(findings.Facts(conn)))
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
