"""TCP segment -> side stream: the sans-IO TCP reassembler of one side.

Theory of operation
-------------------
A ``SideStream`` is fed, in capture order, the segments one side of a
connection sent (``segment``), what the peer acknowledged of them (``acked``)
and the end of the connection (``finish``). It returns events:

- ``Data(offset, payload, frame, time)``: the next bytes of the side stream,
  in order, each tagged with the frame of their first transmission;
- ``Gap(offset, length)``: bytes the capture never held and never will.

For the commonest segment, the next bytes in order with nothing held,
``take`` advances the stream without making an event (the caller has the
bytes), and a caller that fuses a run of such segments hands the stream its
new end once with ``end_run``.

Offsets count from the first byte after the SYN; when the capture starts
mid-connection, from the first byte seen (``midstream``). Sequence numbers
wrap at 2^32; offsets do not (they are unwrapped against the last delivered
offset).

Out-of-order segments are held until the hole before them fills. A hole is
declared a capture gap when the peer acknowledges bytes past it (the peer had
them, so no retransmission will come), when the held bytes exceed
``HOLD_LIMIT``, or at the end. Where a retransmission overlaps bytes already
seen the first seen wins; bytes that differ are counted as ``conflicts``
(against held bytes: delivered bytes are not kept). Nothing is held but
out-of-order segments.

Held segments are found by offset in logarithmic time, so that a connection
with many holes costs no more per segment than one with few: ``held`` maps
each held piece's offset to it, and ``held_starts`` lists those offsets in
order (from index ``held_head`` on: the first held piece is taken off by
moving that index, and the list is compacted now and then).
"""

from bisect import bisect_left, insort
from types import MappingProxyType
from typing import NamedTuple

from ..frame import FIN, RST, SYN

_tuple_new = tuple.__new__    # a NamedTuple from its fields, in a tuple (its __new__ is Python code)

MASK = 0xFFFFFFFF
HALF = 1 << 31


class Data(NamedTuple):
    """The next bytes of a side stream, in order."""

    offset: int
    """Where they start in the side stream (bytes from the first byte after the SYN)."""
    payload: bytes
    """The bytes."""
    frame: int
    """The frame of their first transmission (1-based, as Wireshark numbers frames)."""
    time: float
    """That frame's capture time."""


class Gap(NamedTuple):
    """Bytes of a side stream the capture never held and never will."""

    offset: int
    """Where the hole starts in the side stream."""
    length: int
    """How many bytes it lacks."""


# Out-of-order bytes held before the oldest hole is taken for a capture gap.
HOLD_LIMIT = 4 << 20
HOLD_SEGMENTS = 4096
# Peer ACKs past a hole before it is taken for a capture gap.
HOLE_ACKS = 3
# A FIN, RST or acknowledgment further than this past the delivered bytes is
# not taken as the stream's end (a RST with a made-up sequence number).
PLAUSIBLE_AHEAD = 1 << 26

NOTHING = ()


# An empty read-only mapping: what a side stream holds until it first holds a
# segment (most never do; a dict and a list each would cost every side 120 bytes)
NOT_HELD = MappingProxyType({})

class SideStream:
    """Reassembles the bytes one side of a connection sent; see the module docstring."""

    # Invariants: bytes before ``next`` were delivered (as Data or Gap) and are
    # never held; ``held`` keys are offsets past ``next``, and no two held
    # pieces overlap; ``held_starts[held_head:]`` are the keys of ``held``, in
    # order; ``last_end`` is the end of the last segment with payload.
    __slots__ = ("base", "other_bases", "syn", "midstream", "next", "held", "held_starts", "held_head",
                 "held_bytes",
                 "fin", "rst", "peer_acked", "retransmissions", "out_of_order",
                 "conflicts", "gaps", "gap_bytes", "keepalives", "snap_cut",
                 "segments", "before_start", "last_end", "hole_acked")

    def __init__(self):
        self.base = None          # sequence number of offset 0
        self.other_bases = None   # before any data: the starts of its other SYNs (another ISN)
        self.syn = False          # its SYN was seen
        self.midstream = False    # offsets count from the first byte seen, not the SYN
        self.next = 0             # offset of the first byte not yet delivered
        self.held = NOT_HELD      # offset -> (payload, frame, time, missing); made at the first
        self.held_starts = ()     # the offsets of `held` in order, from held_head on (a list then)
        self.held_head = 0
        self.held_bytes = 0
        self.fin = None           # offset of its first FIN
        self.rst = None           # offset its first RST points at
        self.peer_acked = None    # furthest offset the peer acknowledged
        self.retransmissions = 0
        self.out_of_order = 0
        self.conflicts = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.keepalives = 0
        self.snap_cut = 0         # segments cut by the snap length
        self.segments = 0         # segments that carried payload
        self.before_start = 0     # bytes before offset 0 of a mid-stream start
        self.last_end = 0         # offset just past the last segment that carried payload
        self.hole_acked = 0       # peer ACKs seen past the current hole

    def offset(self, seq):
        """Stream offset of sequence number ``seq`` (unwrapped near the delivered end)."""
        delta = ((seq - self.base) - self.next) & MASK
        if delta >= HALF:
            delta -= 1 << 32
        return self.next + delta

    def captured_end(self):
        """The stream offset just past the furthest byte captured so far (held included)."""
        end = self.next
        for offset, (payload, _, _, missing) in self.held.items():
            if offset + len(payload) + missing > end:
                end = offset + len(payload) + missing
        return end

    def take(self, seq, size):
        """A segment of ``size`` payload bytes at ``seq`` (no SYN, FIN or RST, wholly
        captured), when it is the next bytes in order with nothing held: the
        stream moves past it and its offset is returned (the caller hands the bytes
        on). None (nothing done) for any other segment: give it to ``segment``."""
        base = self.base
        if base is None or self.held or (seq - base) & MASK != self.next & MASK:
            return None
        offset = self.next
        self.segments += 1
        self.next = self.last_end = offset + size
        return offset

    def end_run(self, end, count):
        """A caller took ``count`` more segments in order, as ``take`` would have,
        the last ending at offset ``end``."""
        self.next = self.last_end = end
        self.segments += count

    def segment(self, seq, flags, payload, frame, time, missing=0):
        """A segment this side sent. Returns the events it releases."""
        if payload and not missing and not flags & (SYN | FIN | RST):
            offset = self.take(seq, len(payload))      # the common case: the next bytes
            if offset is not None:
                return (_tuple_new(Data, (offset, payload, frame, time)),)
        if self.base is None:
            if flags & SYN:
                self.base = (seq + 1) & MASK
                self.syn = True
            else:
                self.base = seq
                self.midstream = True
        elif flags & SYN and not self.syn and not self.next and not self.held:
            # the SYN came after other packets (reordered capture)
            self.base = (seq + 1) & MASK
            self.syn = True
            self.midstream = False
        elif flags & SYN and (seq + 1) & MASK != self.base and not self.next and not self.held:
            # another SYN (SYN-ACK) with another initial sequence number, before any
            # data: the side starts from it (as Wireshark's sequence numbers do)
            # unless the peer had acknowledged the first already; the peer's ACK or
            # the first data decides between them (see _switch_base)
            start = (seq + 1) & MASK
            if self.peer_acked == 0:
                self.other_bases = (self.other_bases or ()) + (start,)
            else:
                self.other_bases = (self.other_bases or ()) + (self.base,)
                self.base = start
        elif self.other_bases is not None and not self.next and not self.held \
                and seq in self.other_bases:
            self._switch_base(seq)        # its first data starts at another SYN's start
        offset = self.offset(seq)
        if flags & SYN:
            offset += 1
        size = len(payload) + missing
        end = offset + size
        if flags & FIN and self.fin is None and 0 <= end - self.next < PLAUSIBLE_AHEAD:
            self.fin = end
        if flags & RST and self.rst is None and 0 <= offset - self.next < PLAUSIBLE_AHEAD:
            self.rst = offset
        if not size:
            return NOTHING
        self.segments += 1
        self.last_end = end
        if missing:
            self.snap_cut += 1
        nxt = self.next
        if offset == nxt:
            return self._deliver(offset, payload, frame, time, missing)
        if end <= nxt:
            if size == 1 and offset == nxt - 1:
                self.keepalives += 1
            elif offset < 0 and end <= 0 and self.midstream:
                self.before_start += size
            else:
                self.retransmissions += 1
            return NOTHING
        if offset < nxt:
            # partly new: keep the new tail
            cut = nxt - offset
            if offset < 0 and self.midstream:
                self.before_start += cut
            else:
                self.retransmissions += 1
            if cut >= len(payload):
                missing -= cut - len(payload)
                payload = b""
            else:
                payload = payload[cut:]
            return self._deliver(nxt, payload, frame, time, missing)
        # a hole before it: hold what of it is not held already (first seen wins)
        pieces = self._unheld(offset, payload, missing)
        if not pieces:
            self.retransmissions += 1
            return NOTHING
        if len(pieces) > 1 or pieces[0][0] != offset or len(pieces[0][1]) + pieces[0][2] != size:
            self.retransmissions += 1  # partly a copy of held bytes
        else:
            self.out_of_order += 1
        if self.held is NOT_HELD:   # the first held piece: the containers are made
            self.held = {}
        if not isinstance(self.held_starts, list):
            self.held_starts = []
        starts = self.held_starts
        for piece_offset, piece, piece_missing in pieces:
            self.held[piece_offset] = (piece, frame, time, piece_missing)
            self.held_bytes += len(piece)
            if len(starts) == self.held_head or piece_offset > starts[-1]:
                starts.append(piece_offset)         # the common case: after the others
            else:
                insort(starts, piece_offset, self.held_head)
        if self.held_bytes > HOLD_LIMIT or len(self.held) > HOLD_SEGMENTS:
            return self._skip_hole()
        return NOTHING

    def _unheld(self, offset, payload, missing):
        """The parts of a segment that no held segment covers, as (offset, payload,
        missing); bytes that differ from held ones they overlap count as conflicts."""
        end = offset + len(payload) + missing
        pieces = []
        at = offset
        held, starts = self.held, self.held_starts
        # the held pieces it overlaps, in order: the one that starts before it
        # (held pieces do not overlap: only the last one before it can reach it),
        # then those that start inside it
        i = bisect_left(starts, offset, self.held_head)
        if i > self.held_head:
            before = held[starts[i - 1]]
            if starts[i - 1] + len(before[0]) + before[3] > offset:
                i -= 1
        stop = len(starts)
        while i < stop and starts[i] < end:
            held_offset = starts[i]
            i += 1
            held_payload, _, _, held_missing = held[held_offset]
            held_end = held_offset + len(held_payload) + held_missing
            # compare the captured bytes both have
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

    def acked(self, ack):
        """The peer acknowledged this side's bytes up to sequence number ``ack``."""
        if self.other_bases is not None and ack in self.other_bases and not self.next:
            self._switch_base(ack)        # the peer took that SYN's
        delta = ((ack - self.base) - self.next) & MASK
        if delta >= PLAUSIBLE_AHEAD:
            return NOTHING  # behind what was delivered, or implausibly far ahead
        offset = self.next + delta
        if self.peer_acked is None or offset > self.peer_acked:
            self.peer_acked = offset
        if self.held and offset > self.next and self.held_starts[self.held_head] < offset:
            # the peer had the bytes of the hole: they will not come again, once a
            # few of its ACKs say so (a capture may show an ACK before the data)
            self.hole_acked += 1
            if self.hole_acked > HOLE_ACKS:
                return self._skip_hole()
        return NOTHING

    def finish(self):
        """End of the connection: release what is held, with the holes as gaps."""
        events = []
        while self.held:
            events += self._skip_hole()
        # where the stream ended: its FIN, else what the peer acknowledged or its RST
        if self.fin is not None:
            end = self.fin
        else:
            end = max(m for m in (self.next, self.peer_acked, self.rst) if m is not None)
        if end > self.next:
            events.append(Gap(self.next, end - self.next))
            self.gaps += 1
            self.gap_bytes += end - self.next
            self.next = end
        return events

    # -- internals ------------------------------------------------------------

    def _switch_base(self, start):
        """Another SYN's start is the one the connection uses (nothing delivered yet)."""
        self.other_bases = tuple(b for b in self.other_bases if b != start) + (self.base,)
        self.base = start
        self.peer_acked = None

    def _emit(self, events, offset, payload, frame, time, missing):
        """A piece delivered at ``offset``: its captured bytes, then the bytes the
        snap length cut (a gap); the stream's new end."""
        if payload:
            events.append(_tuple_new(Data, (offset, payload, frame, time)))
        offset += len(payload)
        if missing > 0:
            events.append(Gap(offset, missing))
            self.gaps += 1
            self.gap_bytes += missing
            offset += missing
        self.next = offset

    def _deliver(self, offset, payload, frame, time, missing):
        self.hole_acked = 0
        events = []
        self._emit(events, offset, payload, frame, time, missing)
        if self.held:
            self._drain(events)
        return events

    def _unhold(self, offset):
        """The held piece at ``offset`` leaves ``held_starts`` (``held`` is done by the caller)."""
        starts, head = self.held_starts, self.held_head
        if starts[head] == offset:
            head += 1
            if head == len(starts):
                starts.clear()
                head = 0
            elif head > 64 and 2 * head > len(starts):
                del starts[:head]           # compacted: amortised constant time
                head = 0
            self.held_head = head
        else:                               # (a piece under the delivered bytes is left)
            del starts[bisect_left(starts, offset, head)]

    def _drain(self, events):
        held = self.held
        while held:
            nxt = self.next
            entry = held.pop(nxt, None)
            if entry is not None:
                self._unhold(nxt)
            else:
                first = self.held_starts[self.held_head]
                if first > nxt:
                    return
                entry = held.pop(first)
                self._unhold(first)
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
        """Give up on the hole before the first held segment: it is a capture gap."""
        self.hole_acked = 0
        first = self.held_starts[self.held_head]
        events = [Gap(self.next, first - self.next)]
        self.gaps += 1
        self.gap_bytes += first - self.next
        self.next = first
        self._drain(events)
        return events
