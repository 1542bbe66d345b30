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


# -- many holes: held segments found by offset -----------------------------------------

class _Counted(dict):
    """A ``held`` dict that counts the held pieces looked at."""

    looked = 0

    def __getitem__(self, key):
        _Counted.looked += 1
        return super().__getitem__(key)

    def items(self):
        for item in super().items():
            _Counted.looked += 1
            yield item

    def __iter__(self):
        for key in super().__iter__():
            _Counted.looked += 1
            yield key


def test_each_segment_after_a_hole_looks_at_the_held_pieces_it_overlaps_only():
    """2,000 holes (every other segment missing), then retransmissions of some held
    ones: the work per segment does not grow with the number held."""
    side = SideStream()
    side.segment(1000, SYN, b"", 1, 0.0)
    side.held = _Counted()
    _Counted.looked = 0
    holes = 2000
    for i in range(holes):
        assert side.segment(1001 + 200 * i + 100, 0x10, b"x" * 100, 2 + i, 0.0) == ()
    for i in range(0, holes, 7):                   # copies of held ones, one byte wider
        side.segment(1001 + 200 * i + 99, 0x10, b"y" * 102, 9000 + i, 0.0)
    assert len(side.held) == holes + 2 * len(range(0, holes, 7))
    assert side.held_starts[side.held_head:] == sorted(side.held)
    assert _Counted.looked <= 3 * (holes + len(range(0, holes, 7)))
    assert side.conflicts == len(range(0, holes, 7))
    # the holes are skipped in order, each its own gap
    events = side.finish()
    assert sum(isinstance(e, Gap) for e in events) == holes
    assert side.held_starts == [] and side.held_head == 0


class _Linear(SideStream):
    """The reassembler as it was, with held segments scanned one by one: the
    reference the indexed one must agree with, event for event."""

    __slots__ = ()

    def _unheld(self, offset, payload, missing):
        end = offset + len(payload) + missing
        pieces = []
        at = offset
        for held_offset in sorted(o for o, h in self.held.items()
                                  if o < end and o + len(h[0]) + h[3] > offset):
            held_payload, _, _, held_missing = self.held[held_offset]
            held_end = held_offset + len(held_payload) + held_missing
            lo, hi = max(offset, held_offset), min(offset + len(payload), held_offset + len(held_payload))
            if lo < hi and bytes(payload[lo - offset:hi - offset]) != \
                    bytes(held_payload[lo - held_offset:hi - held_offset]):
                self.conflicts += 1
            if held_offset > at:
                pieces.append(at)
                pieces.append(held_offset)
            at = max(at, held_end)
        if at < end:
            pieces.append(at)
            pieces.append(end)
        captured_end = offset + len(payload)
        out = []
        for lo, hi in zip(pieces[::2], pieces[1::2]):
            piece = payload[lo - offset:min(hi, captured_end) - offset] if lo < captured_end else b""
            out.append((lo, piece, hi - lo - len(piece)))
        return out

    def _unhold(self, offset):
        pass

    def _drain(self, events):
        held = self.held
        while held:
            nxt = self.next
            entry = held.pop(nxt, None)
            if entry is None:
                first = min(held)
                if first > nxt:
                    return
                entry = held.pop(first)
                payload, frame, time, missing = entry
                self.held_bytes -= len(payload)
                cut = nxt - first
                if cut >= len(payload) + missing:
                    continue
                if cut >= len(payload):
                    missing -= cut - len(payload)
                    payload = b""
                else:
                    payload = payload[cut:]
                entry = (payload, frame, time, missing)
                self.held_bytes += len(payload)
            payload, frame, time, missing = entry
            self.held_bytes -= len(payload)
            self._emit(events, nxt, payload, frame, time, missing)

    def _skip_hole(self):
        self.hole_acked = 0
        first = min(self.held)
        events = [Gap(self.next, first - self.next)]
        self.gaps += 1
        self.gap_bytes += first - self.next
        self.next = first
        self._drain(events)
        return events

    def acked(self, ack):
        self.held_starts = sorted(self.held)      # what the indexed one reads
        self.held_head = 0
        return super().acked(ack)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 60), st.sampled_from(b"ab"),
                          st.integers(0, 5), st.booleans()), min_size=1, max_size=40))
def test_held_segments_indexed_as_scanned(segments):
    """Overlapping, differing, snap-cut segments in any order, and ACKs: the same
    events, conflicts and counters as scanning every held segment."""
    sides = [SideStream(), _Linear()]
    out = [[], []]
    for side, events in zip(sides, out):
        side.segment(1000, SYN, b"", 1, 0.0)
        for frame, (offset, size, fill, missing, ack) in enumerate(segments, 2):
            events += side.segment(1001 + offset, 0x10, bytes([fill]) * size, frame, 0.0,
                                   missing=missing if size else 0)
            if ack:
                events += side.acked(1001 + offset + size)
        events += side.finish()
    assert out[0] == out[1]
    names = ("next", "held_bytes", "retransmissions", "out_of_order", "conflicts", "gaps",
             "gap_bytes", "keepalives", "snap_cut", "segments")
    assert [getattr(sides[0], n) for n in names] == [getattr(sides[1], n) for n in names]
