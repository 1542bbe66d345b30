"""Frames -> connections: the packet loop, step by step or with the common case fused.

``steps`` is the reference: each frame's bytes are copied out (``Capture.frames``),
decoded to a ``frame.Segment`` (``frame.decode``) and handed to the connection
table (``ConnectionTable.segment``).

``fused`` gives the same result faster. Most packets of a TLS capture are TCP
segments over IPv4 or IPv6 over Ethernet (or Linux cooked, as ``tcpdump -i any``
writes) that continue a known connection in order: the next bytes of a side
stream, often in the middle of a record body, or a bare acknowledgment. For
those it reads the headers where they lie in the capture's read buffer
(``Capture.batches``; compiled, byte by byte into C integers, in pure Python
with one ``struct`` call, which is fewer steps for the interpreter), finds the
connection by the address and port bytes
(``ConnectionTable.entry``) and calls ``Connection.segment_in_order``, which
copies the payload only when the record tracker needs its bytes. A run of
segments of one side inside one record body then goes on in local variables
and is handed back with ``Connection.end_run`` and ``ConnectionTable.end_run``
before any other packet is looked at. A SYN, FIN or RST, or a segment of no
known connection or out of order, goes to ``ConnectionTable.place`` as the
``frame.Segment`` made from the fields already read. IPv4 that ``frame.decode``
gives no segment for is passed over without it: a fragment, UDP on none of the ports of
``frame.UDP_TUNNEL_PORTS``, ICMP that is not an error (DNS, syslog and pings, a
field capture's other packets). Every other packet (other link layers, VLAN tags,
IP options, tunnels, ICMP errors) takes the steps (``frame.decode``,
``ConnectionTable.place``). tests/test_loop.py checks that
both loops give the same records, reports and per-side counters.
"""

import struct

try:
    import cython
    COMPILED = cython.compiled   # (True where this module is compiled, else False)
except ImportError:              # no Cython here: this module is pure Python
    COMPILED = False

from .capture import pcap
from .capture.formats import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2
from .frame import ICMP_ERRORS, UDP_TUNNEL_PORTS, Segment, decode
from .tcp.connection import RUN
from .tcp.reassembly import MASK
from .tcp.table import SWEEP_SECONDS

# The link layers whose header is a fixed length with the ethertype in it:
# Ethernet (no VLAN tag), Linux cooked v1 and v2 (tcpdump -i any).
LINK_HEADERS = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20}
SLL2_HEADER = 20          # v2: its ethertype is at the start, not just before IP
# The header fields the loop reads, where it is not compiled (one struct call
# is fewer steps for the interpreter than a read of each byte; compiled, the
# loop reads the same fields byte by byte, as C integers): from 2 bytes before
# the IPv4 header (the ethertype, for Ethernet and Linux cooked v1) to the TCP
# flags: ethertype, version/IHL, total length, fragment field, protocol,
# (addresses and ports skipped), sequence, acknowledgment, data offset, flags.
_IP4_TCP = struct.Struct(">HBxH2xHxB2x12xIIBB").unpack_from
# The same for IPv6 without extension headers, from the IPv6 header on (its
# version is the top 4 bits of the byte read as IPv4's version/IHL): payload
# length, next header, sequence, acknowledgment, data offset, flags.
_IP6_TCP = struct.Struct(">4xHBx32x4xIIBB").unpack_from
_PORTS_WINDOW = struct.Struct(">HH10xH").unpack_from
PROGRESS_EVERY = 1024      # frames between two progress calls (at most one per read)
_segment = tuple.__new__


def run(capture, table, errors, name, progress=None, fused=True):
    """Feed every frame of ``capture`` to ``table``; returns the number of frames.
    An exception while placing a packet is a bug: it goes to ``errors`` (the first
    five, naming the input ``name``) and the run goes on.  ``progress(frames so
    far)`` is called about every PROGRESS_EVERY frames. ``fused``: the fused loop, else the steps."""
    return (fused_loop if fused else steps)(capture, table, errors, name, progress)


def _internal_error(errors, name, n, exc):
    if len(errors) < 5:
        errors.append(f"{name}: internal error at frame {n}: {type(exc).__name__}: {exc}")


def steps(capture, table, errors, name, progress=None):
    """The reference loop: every frame through ``frame.decode`` and
    ``ConnectionTable.segment``."""
    n = 0
    report_at = PROGRESS_EVERY
    for n, time, linktype, data, orig_len in capture.frames():
        try:
            segment = decode(linktype, data, orig_len)
            if segment is not None:
                table.segment(n, time, segment)
        except Exception as exc:  # a bug: say so, keep going
            _internal_error(errors, name, n, exc)
        if progress is not None and n >= report_at:
            report_at = n + PROGRESS_EVERY
            progress(n)
    return n


def fused_loop(capture, table, errors, name, progress=None):
    """The loop with the common case fused (see the module docstring)."""
    # the run in progress: the wire key of its side (None: no run), its entry, what
    # it expects next (stream offset, sequence number, acknowledgment), the record
    # body bytes left, the table's ticks left before a sweep and the time of the
    # last sweep, and the frames, stream ends and times it took
    hot = hot_entry = None
    h_next = h_seq = h_left = h_ack = h_countdown = 0
    h_swept = 0.0
    frames = ends = times = None
    n = 0
    report_at = PROGRESS_EVERY
    known = link = None       # the last link type seen, and its header length
    ip4_least = ip6_least = 0
    ethertype_first = False
    # (set with each packet's key, read only when it has one)
    seq = ack = flags = size = ps = tcp = 0
    compiled = COMPILED       # (a local: read once a packet or more)
    for buf, packets in capture.batches():
        if type(buf) is not bytes:
            buf = bytes(buf)          # (a reader's bytearray or view: read as bytes below)
        for p, incl, orig, time, n, linktype in packets:
            try:
                key = None
                nothing = False       # the packet is one decode() gives None for (no key then)
                if linktype != known:
                    known, link = linktype, LINK_HEADERS.get(linktype)
                    if link is not None:   # where the IP and TCP headers end, at least
                        ip4_least, ip6_least = link + 40, link + 60
                        ethertype_first = link == SLL2_HEADER
                if link is not None and incl >= ip4_least:
                    q = p + link                       # the IP header
                    if compiled:
                        # the fields of _IP4_TCP, byte by byte (no tuple, no int objects);
                        # the TCP ones of a packet with a key, below
                        et = buf[q - 2] << 8 | buf[q - 1]
                        vhl = buf[q]
                        tot = buf[q + 2] << 8 | buf[q + 3]
                        frag = buf[q + 6] << 8 | buf[q + 7]
                        proto = buf[q + 9]
                        offx = buf[q + 32]
                    else:
                        et, vhl, tot, frag, proto, seq, ack, offx, flags = _IP4_TCP(buf, q - 2)
                    if ethertype_first:
                        et = (buf[p] << 8) | buf[p + 1]
                    if et == 0x0800:
                        if vhl == 0x45 and proto == 6 and not frag & 0x3FFF and 40 <= tot \
                                and link + tot <= incl:
                            ps = link + 20 + ((offx >> 4) << 2)   # payload start, in the frame
                            size = link + tot - ps
                            if ps >= ip4_least and size >= 0:
                                key = buf[q + 12:q + 24]
                                tcp = q + 20
                        elif vhl == 0x45 and proto != 6 and (
                                frag & 0x3FFF or proto == 1 and buf[q + 20] not in ICMP_ERRORS
                                or proto == 17 and (buf[q + 20] << 8 | buf[q + 21]) not in UDP_TUNNEL_PORTS
                                and (buf[q + 22] << 8 | buf[q + 23]) not in UDP_TUNNEL_PORTS):
                            # a fragment, an ICMP message that is not an error, UDP
                            # that is not a tunnel: what decode() gives None for
                            nothing = True
                    elif et == 0x86DD and incl >= ip6_least:
                        if compiled:          # (as above: the fields of _IP6_TCP)
                            plen = buf[q + 4] << 8 | buf[q + 5]
                            nh = buf[q + 6]
                            offx = buf[q + 52]
                        else:
                            plen, nh, seq, ack, offx, flags = _IP6_TCP(buf, q)
                        if vhl >> 4 == 6 and nh == 6 and 20 <= plen and ip4_least + plen <= incl:
                            ps = ip4_least + ((offx >> 4) << 2)
                            size = ip4_least + plen - ps
                            if ps >= ip6_least and size >= 0:
                                key = buf[q + 8:q + 44]
                                tcp = q + 40
                if compiled and key is not None:
                    # the TCP fields of _IP4_TCP and _IP6_TCP: sequence and acknowledgment
                    # numbers, flags
                    seq = pcap.u32(buf, tcp + 4, False)
                    ack = pcap.u32(buf, tcp + 8, False)
                    flags = buf[tcp + 13]
                if key is not None and size and key == hot and seq == h_seq and size < h_left \
                        and ack == h_ack and not flags & 7 and h_countdown > 1 \
                        and time - h_swept <= SWEEP_SECONDS:
                    # the run goes on (and no sweep is due)
                    h_countdown -= 1
                    h_left -= size
                    h_next += size
                    h_seq = (h_seq + size) & MASK
                    frames.append(n)
                    ends.append(h_next)
                    times.append(time)
                    continue
                if hot is not None:
                    hot = None
                    _end_run(table, hot_entry, frames, ends, times, h_left, h_countdown)
                segment = None
                if key is None:
                    if nothing:
                        continue
                    segment = decode(linktype, buf[p:p + incl], orig)
                    if segment is None:
                        continue
                table.tick(time)
                if key is not None:
                    # (a SYN, FIN or RST takes place(): made from what is decoded already)
                    entry = table.entry(key) if not flags & 7 else None
                    if entry is not None:
                        side = entry.side
                        connection = entry.connection
                        done = connection.segment_in_order(side, entry.peer, buf, p + ps, size,
                                                           seq, ack, flags, n, time)
                        if done:
                            if done == RUN:
                                hot, hot_entry = key, entry
                                h_next = side.stream.next
                                h_seq = (seq + size) & MASK
                                h_left = side.tracker.in_body(h_next)
                                h_ack = ack
                                h_countdown, h_swept = table.run_budget()
                                frames, ends, times = [], [], []
                            continue
                    # frame.decode's segment, from what is decoded already
                    half = len(key) - 4 >> 1
                    sport, dport, window = _PORTS_WINDOW(buf, tcp)
                    segment = _segment(Segment, (key[:half], key[half:-4], sport, dport, seq, ack,
                                                 flags, window, buf[p + ps:p + ps + size], 0))
                table.place(n, time, segment, key)     # (key: its wire_key; None for a decoded one)
            except Exception as exc:  # a bug: say so, keep going
                hot = None
                _internal_error(errors, name, n, exc)
        if hot is not None:
            # a run ends with its read: between two reads the table is whole (a live
            # source's reader may have it finish connections while it waits)
            hot = None
            _end_run(table, hot_entry, frames, ends, times, h_left, h_countdown)
        if progress is not None and n >= report_at:
            report_at = n + PROGRESS_EVERY
            progress(n)
    return n


def _end_run(table, entry, frames, ends, times, left, countdown):
    """A run ends: what it took back to its connection, its ticks to the table."""
    if frames:
        entry.connection.end_run(entry.side, frames, ends, times, left)
        table.end_run(countdown, times[-1])
