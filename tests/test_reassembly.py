"""The side-stream reassembler (pcap_tls_split/tcp/reassembly.py), sans-IO: segments in, events out."""

from hypothesis import given, settings, strategies as st

from pcap_tls_split.frame import ACK, SYN
from pcap_tls_split.tcp import Data, Gap, SideStream


def test_the_next_bytes_in_order_are_taken_without_an_event():
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    assert side.take(1001, 10) == 0 and side.next == side.last_end == 10 and side.segments == 1
    assert side.take(1005, 10) is None                       # not the next bytes: nothing done
    assert side.next == 10 and side.segments == 1
    side.end_run(50, 3)                                       # a packet loop took 3 more, to 50
    assert (side.next, side.last_end, side.segments) == (50, 50, 4)
    assert side.segment(1051, ACK, b"x" * 5, 9, 1.0) == (Data(50, b"x" * 5, 9, 1.0),)
    # with a segment held out of order, nothing is taken in order
    side.segment(1001 + 100, ACK, b"y" * 5, 10, 1.0)
    assert side.take(1056, 5) is None


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
            assert isinstance(event, Data) and event.offset == len(out)
            out += event.payload
    for event in side.finish():
        assert not isinstance(event, Gap)
    assert bytes(out) == data


def test_an_ack_captured_before_the_data_it_acknowledges_is_no_gap():
    """Merged or multi-queue captures can show the ACK of a segment before the segment."""
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    got = list(side.segment(1001 + 100, 0x10, b"B" * 100, 2, 0.0))  # held: the hole is 0-100
    got += side.acked(1001 + 200)                                   # the peer ACKs A and B
    got += side.segment(1001, 0x10, b"A" * 100, 3, 0.0)             # then A arrives
    got += side.finish()
    assert [type(e) for e in got] == [Data, Data] and side.gaps == 0
    assert b"".join(e.payload for e in got) == b"A" * 100 + b"B" * 100
    # when the hole stays, further ACKs past it make it a gap
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    side.segment(1001 + 100, 0x10, b"B" * 100, 2, 0.0)
    events = []
    for _ in range(5):
        events += side.acked(1001 + 200)
    assert events[0] == Gap(0, 100) and side.gaps == 1


def test_first_seen_wins_among_held_segments():
    """Held A at 100-150, then a different B at 90-190: bytes 100-150 stay A's, B's are a conflict."""
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    side.segment(1001 + 100, 0x10, b"A" * 50, 2, 0.0)
    side.segment(1001 + 90, 0x10, b"B" * 100, 3, 0.0)
    events = list(side.segment(1001, 0x10, b"C" * 90, 4, 0.0))
    data = b"".join(e.payload for e in events)
    assert data == b"C" * 90 + b"B" * 10 + b"A" * 50 + b"B" * 40
    frames = [(e.offset, e.frame) for e in events]
    assert frames == [(0, 4), (90, 3), (100, 2), (150, 3)]
    assert side.conflicts == 1 and side.gaps == 0
