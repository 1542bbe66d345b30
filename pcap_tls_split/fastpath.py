"""Frames -> connections: the packet loop, with the common case fused into it.

Most packets of a TLS capture are TCP segments over IPv4 or IPv6 over Ethernet
(or Linux cooked, as ``tcpdump -i any`` writes) that continue a known connection
in order: the next bytes of a side stream, in the
middle of a record body, or a bare acknowledgment.  Taking the steps one by one
for those (a frame's bytes copied out, ``frame.decode``'s tuple,
``ConnectionTable.segment``, ``Connection.packet``, ``SideStream.segment``,
``RecordTracker.data``) costs several times the work itself.  ``run`` reads the
capture's packets where they lie in each read (``Capture.batches``) and, for
exactly those packets, makes inline the state changes the steps would make;
every other packet goes through the steps (``frame.decode``, then
``ConnectionTable.place``).  The steps stay the reference: tests/test_fastpath.py
checks that both ways give the same records and reports, on every sample and
corpus capture and on damaged ones.
"""

import struct

from .connection import SWEEP_SECONDS
from .frame import decode
from .reassembly import ACK, DATA, MASK
from .records import SYNC

# The link layers whose header is a fixed length with the ethertype in it:
# Ethernet (no VLAN tag), Linux cooked v1 and v2 (tcpdump -i any).
LINK_HEADERS = {1: 14, 113: 16, 276: 20}
SLL2_HEADER = 20          # v2: its ethertype is at the start, not just before IP
# From 2 bytes before the IPv4 header (the ethertype, for Ethernet and Linux
# cooked v1) to the TCP flags: ethertype, version/IHL, total length, fragment
# field, protocol, (addresses and ports skipped), sequence, acknowledgment, data
# offset, flags.
_IP4_TCP = struct.Struct(">HBxH2xHxB2x12xIIBB").unpack_from
# The same for IPv6 without extension headers, from the IPv6 header on: version
# (top 4 bits), payload length, next header, sequence, acknowledgment, data
# offset, flags.
_IP6_TCP = struct.Struct(">IHBx32x4xIIBB").unpack_from
_PORTS_WINDOW = struct.Struct(">HH10xH").unpack_from
RUN = 2     # _continue: done, and the side may go on as a run
PROGRESS_EVERY = 16384


def run(capture, table, errors, name, progress=None):
    """Feed every frame of ``capture`` to ``table``; returns the number of frames.
    An exception while placing a packet is a bug: it goes to ``errors`` (the first
    five, naming the input ``name``) and the run goes on.  ``progress()`` is
    called about every 16384 frames.

    Within the common case there is a commoner one: a run of segments of one
    side, each the next bytes of the stream and inside the same record body.  For
    such a run the state that changes (offsets, the body left, the time) is held
    in local variables and written back to the side's objects when the run ends,
    before anything else can look at them."""
    wire = table.by_wire
    place = table.place
    tick = table.tick
    # the run in progress: the wire key of its side (None: no run), and its state,
    # with the table's countdown to its next sweep and the time of its last one
    hot = hot_entry = None
    h_next = h_seq = h_left = h_ack = h_count = h_countdown = 0
    h_time = h_swept = 0.0
    frames_append = ends_append = segments_append = None
    n = 0
    report_at = PROGRESS_EVERY
    known = link = None       # the last link type seen, and its header length
    ip4_least = ip6_least = 0
    ethertype_first = False
    for buf, packets in capture.batches():
        for p, incl, orig, time, n, linktype in packets:
            try:
                key = None
                if linktype != known:
                    known, link = linktype, LINK_HEADERS.get(linktype)
                    if link is not None:   # where the IP and TCP headers end, at least
                        ip4_least, ip6_least = link + 40, link + 60
                        ethertype_first = link == SLL2_HEADER
                if link is not None and incl >= ip4_least:
                    q = p + link                       # the IP header
                    et, vhl, tot, frag, proto, seq, ack, offx, flags = _IP4_TCP(buf, q - 2)
                    if ethertype_first:
                        et = (buf[p] << 8) | buf[p + 1]
                    if et == 0x0800:
                        if vhl == 0x45 and proto == 6 and not frag & 0x3FFF and 40 <= tot \
                                and link + tot <= incl and not flags & 7:
                            ps = link + 20 + ((offx >> 4) << 2)   # payload start, in the frame
                            size = link + tot - ps
                            if ps >= ip4_least and size >= 0:
                                key = buf[q + 12:q + 24]
                                tcp = q + 20
                    elif et == 0x86DD and incl >= ip6_least:
                        vfl, plen, nh, seq, ack, offx, flags = _IP6_TCP(buf, q)
                        if vfl >> 28 == 6 and nh == 6 and 20 <= plen and ip4_least + plen <= incl \
                                and not flags & 7:
                            ps = ip4_least + ((offx >> 4) << 2)
                            size = ip4_least + plen - ps
                            if ps >= ip6_least and size >= 0:
                                key = buf[q + 8:q + 44]
                                tcp = q + 40
                if key is not None:
                        if size and key == hot and seq == h_seq and size < h_left \
                                and ack == h_ack and h_countdown > 1 \
                                and time - h_swept <= SWEEP_SECONDS:
                            # the run goes on (and no sweep is due)
                            h_countdown -= 1
                            h_left -= size
                            h_next += size
                            h_seq = (h_seq + size) & MASK
                            h_count += 1
                            h_time = time
                            frames_append(n)
                            ends_append(h_next)
                            segments_append((n, time, h_next))
                            continue
                if hot is not None:
                    _flush(table, hot_entry, h_next, h_left, h_time, h_count, h_countdown)
                    hot = None
                segment = None
                if key is None:
                    segment = decode(linktype, buf[p:p + incl], orig)
                    if segment is None:
                        continue
                tick(time)
                if key is not None:
                    entry = wire.get(key)
                    if entry is not None:
                        done = _continue(entry, buf, p + ps, size, seq, ack, flags, n, time)
                        if done:
                            if done == RUN:
                                hot, hot_entry = key, entry
                                side = entry[1]
                                stream, tracker = side.stream, side.tracker
                                h_next = stream.next
                                h_seq = (stream.base + h_next) & MASK
                                h_left = tracker._body_left
                                h_ack = ack
                                h_count = 0
                                h_time = time
                                h_countdown, h_swept = table._countdown, table._swept
                                frames_append = tracker._cur_frames.append
                                ends_append = tracker._cur_ends.append
                                segments_append = side.segments.append
                            continue
                    # frame.decode's tuple, from what is decoded already
                    half = len(key) - 4 >> 1
                    sport, dport, window = _PORTS_WINDOW(buf, tcp)
                    segment = (key[:half], key[half:-4], sport, dport, seq, ack, flags, window,
                               buf[p + ps:p + ps + size], 0)
                place(n, time, segment)
            except Exception as exc:  # a bug: say so, keep going
                hot = None
                if len(errors) < 5:
                    errors.append(f"{name}: internal error at frame {n}: "
                                  f"{type(exc).__name__}: {exc}")
        if progress is not None and n >= report_at:
            report_at = n + PROGRESS_EVERY
            progress()
    if hot is not None:
        _flush(table, hot_entry, h_next, h_left, h_time, h_count, h_countdown)
    return n


def _flush(table, entry, nxt, left, time, count, countdown):
    """A run ends: its state back to the table and the side's objects."""
    table.now = time
    table._countdown = countdown
    conn, side, _ = entry
    stream, tracker = side.stream, side.tracker
    stream.next = stream.last_end = tracker.pos = nxt
    stream.segments += count
    tracker._body_left = left
    tracker._last_time = conn.last = time


def _continue(entry, buf, start, size, seq, ack, flags, frame, time):
    """The packet, if it continues its connection in order (no SYN, FIN or RST;
    the whole segment captured): what ``Connection.packet`` would do, done here in
    the same order.  False (nothing done) for any other packet; ``RUN`` when it
    carried data and left its side inside a record body, acknowledging as before
    (the next segments of the side may go on as a run)."""
    conn, side, peer = entry
    stream = side.stream
    base = stream.base
    if base is None:              # (then its first sequence number is known too)
        return False
    nxt = stream.next
    if size and (stream.held or (seq - base) & MASK != nxt & MASK):
        return False
    conn.last = time
    if conn.rtt is None and conn.syn_time is not None and side.syn and flags & ACK:
        conn.rtt = time - conn.syn_time
    tracker = side.tracker
    if size:
        # SideStream.segment's in-order case
        stream.segments += 1
        end = stream.next = stream.last_end = nxt + size
        if tracker is not None and tracker.pos == nxt and tracker.mode == SYNC \
                and tracker._type is not None and not tracker._reading \
                and size < tracker._body_left:
            # RecordTracker.data's case: the middle of a record body (a new frame)
            tracker._body_left -= size
            tracker.pos = end
            tracker._cur_frames.append(frame)
            tracker._cur_ends.append(end)
            tracker._last_time = time
        elif tracker is not None:
            for record in tracker.data(nxt, buf[start:start + size], frame, time):
                conn._record(side, record)
        else:
            conn._consume(side, ((DATA, nxt, buf[start:start + size], frame, time),))
        side.segments.append((frame, time, end))
    if flags & ACK and ack != side.last_ack and peer.stream.base is not None:
        side.last_ack = ack
        events = peer.stream.acked(ack)
        if events:
            conn._consume(peer, events)
    if size and flags & ACK and side.last_ack == ack and tracker is not None \
            and tracker.mode == SYNC and tracker._type is not None and not tracker._reading \
            and tracker._body_left > 0 and tracker.pos == stream.next and not stream.held:
        return RUN
    return True
