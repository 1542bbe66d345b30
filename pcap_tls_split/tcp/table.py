"""TCP segments -> connections: the connection table.

Theory of operation
-------------------
``ConnectionTable.segment`` takes each decoded ``frame.Segment`` in capture
order, finds its connection by its addresses and ports (numbering connections as Wireshark's
``tcp.stream`` does: in order of first packet; a SYN whose sequence number
differs from the one its direction started with opens a new connection on
the same 4-tuple) and hands it to ``Connection.packet``.

A connection ends (``Connection.finish``, then ``on_connection``) when, after
both FINs or a RST, ``linger`` seconds of capture time pass; when it has been
idle for ``idle_timeout`` seconds; when a new SYN reuses its 4-tuple; or at
the end of the capture. A small tombstone keeps the stream number of an ended
connection so that late packets do not renumber the streams after it, and a
SYN with the initial sequence number its client started with (a retried
handshake, even after a RST) goes on in that stream, as in Wireshark.

The state is bounded whatever the capture: at most ``max_half_open``
connections that have seen neither a SYN-ACK nor a payload byte (beyond it the
oldest opened is ended, as by its idle timeout), at most ``max_connections``
tracked at once (the least recently active ended first, as by its idle timeout:
a later packet of it goes on as its continuation), at most ``max_tombstones``
tombstones (the oldest forgotten: a late packet of that connection then opens
a new one). Each bound costs constant amortised time per new connection;
``evictions`` counts what each let go and ``anomalies`` says it in words.

Wireshark's other numbering rules followed here: a TCP header quoted in an
ICMP error (``frame.ICMP_QUOTE``) takes a stream number when no connection
has that 4-tuple yet; the SOCKS dissector (port 1080) spends one for the
proxied connection at the first payload after the proxy granted it
(``socks.py``). Capture time that jumps ahead by more than ``idle_timeout`` (and
a minute) in one packet is taken only once a second packet confirms it, so
that one absurd timestamp does not end every connection through the idle
timeout.

One capture on several workers: with ``share=(index, count)`` the table still
takes every segment, but only the connections ``share_of`` gives ``index`` are
``Connection``s; the others are ``Numbered``, which keep just what numbering,
the bounds and the end order look at. Every worker's table so numbers, bounds
and ends every connection as one table alone would, and ``on_connection`` is
called for each (``Connection.foreign`` tells the others apart).

Time moves on with ``tick`` (once per segment: now and then it sweeps for
ended and idle connections); ``place`` hands a segment to its connection. A
packet loop that lets a run of segments pass without a tick asks how far it may
go (``run_budget``) and hands back what is left (``end_run``).

On a live source capture time stands still while nothing is captured: ``quiet``
(the reader's wall-clock silence, between two reads) finishes the connections
that have ended without waiting for ``linger``, once the source has been silent
for ``QUIET`` seconds, and those idle for ``idle_timeout`` counting the silence.
"""

import struct
import zlib
from collections import OrderedDict
from typing import NamedTuple

from ..frame import ACK, ICMP_QUOTE, SYN
from .connection import Connection, Numbered, Side
from .socks import SOCKS_PORT, SocksWatch

_PORTS = struct.Struct(">HH").pack

_tuple_new = tuple.__new__    # a NamedTuple from its fields, in a tuple (its __new__ is Python code)

LINGER = 2.0
IDLE_TIMEOUT = 600.0
SWEEP_EVERY = 8192  # packets between sweeps for idle and ended connections...
SWEEP_SECONDS = 1.0  # ...or seconds of capture time, whichever comes first
JUMP_LEAST = 60.0   # capture time jumping ahead by more (and the idle timeout) waits for a second packet
QUIET = 1.0  # seconds of wall-clock silence of a live source after which ended connections are finished
# Bounds on the state a flood can make the table keep (SYN floods, scans, SYN+RST
# storms): beyond them the oldest are let go, each one counted (``evictions``).
MAX_HALF_OPEN = 10_000       # connections that have seen no SYN-ACK and no payload
MAX_CONNECTIONS = 25_000     # connections tracked at once
MAX_TOMBSTONES = 50_000      # ended connections remembered for their late packets


class Entry(NamedTuple):
    """A connection as one direction of it finds it."""

    connection: Connection
    side: Side
    """The side that sends in this direction."""
    peer: Side
    """The other side."""


class Tombstone(NamedTuple):
    """What is kept of an ended connection, for its late packets."""

    stream: int
    """Its stream number."""
    kind: str
    """``closed`` (late packets are dropped) or ``idle`` (a packet wakes it up)."""
    time: float
    """Capture time of its last packet."""
    client: tuple
    """The client's (address, port)."""
    client_seq: int
    """The initial sequence number of the client's SYN (None: no SYN seen)."""


def share_of(src, sport, dst, dport, count):
    """Which of ``count`` workers analyses the connection between these endpoints
    (the same either way round, in every process: not Python's salted hash)."""
    one, other = bytes(src) + _PORTS(sport, 0), bytes(dst) + _PORTS(dport, 0)
    return zlib.crc32(one + other if one < other else other + one) % count


def _by_stream(item):
    return item[0].stream


def wire_key(src, sport, dst, dport):
    """The addresses and ports of a segment as its IP and TCP headers carry them
    (for IPv4 without options: 12 contiguous bytes of the frame)."""
    if type(src) is not bytes:
        src = bytes(src)
    if type(dst) is not bytes:
        dst = bytes(dst)
    return src + dst + _PORTS(sport, dport)


def _wire_keys(conn):
    """The wire keys of a connection's two directions: from a, from b."""
    a, b = conn.a, conn.b
    return wire_key(a.addr, a.port, b.addr, b.port), wire_key(b.addr, b.port, a.addr, a.port)


class ConnectionTable:
    """Finds each segment's connection, numbering them as Wireshark's tcp.stream."""

    def __init__(self, on_connection, on_record=None, idle_timeout=IDLE_TIMEOUT,
                 linger=LINGER, max_half_open=MAX_HALF_OPEN, max_connections=MAX_CONNECTIONS,
                 max_tombstones=MAX_TOMBSTONES, share=None):
        self.on_connection = on_connection
        self.on_record = on_record
        self.idle_timeout = idle_timeout
        self.linger = linger
        self.by_wire = {}             # wire_key (src + dst + ports as on the wire) -> Entry
        # the same for connections in a SOCKS handshake: the fused packet loop must not
        # find them (all their packets take place())
        self._socks_wire = {}
        # OrderedDicts: the oldest is taken in constant time however many went before
        # wire_key of one direction -> (stream, kind, time, client sent in that direction,
        # client_seq), oldest first: a Tombstone's fields without its addresses
        self.tombstones = OrderedDict()
        self.streams = 0              # stream numbers given so far
        self.spent = 0                # ... of which spent as Wireshark's SOCKS dissector does
        self.late_packets = 0
        self.max_half_open = max_half_open
        self.max_connections = max_connections
        self.max_tombstones = max_tombstones
        # (index, count): analyse only the connections share_of gives this index; the
        # others are Numbered (so that numbering, bounds and end order are the same)
        self.share = share
        self.evictions = {"half_open": 0, "connections": 0, "tombstones": 0}
        self._opened = OrderedDict()      # Connection -> capture time queued, oldest queued first
        self._half_open = OrderedDict()   # the same, of those that may still be half-open
        self.now = 0.0                # capture time of the last segment
        # Invariant: a sweep is due when the countdown reaches 0 or capture time
        # passes the last sweep by SWEEP_SECONDS; nothing but tick (and end_run,
        # for a run that ticked none) moves either.
        self._countdown = SWEEP_EVERY
        self._swept = float("-inf")   # capture time of the last sweep
        self._ahead = None            # a time far ahead of now, not yet confirmed
        self._jump = max(idle_timeout, JUMP_LEAST)   # what "far ahead" is

    def segment(self, frame, time, segment):
        """A decoded segment (``frame.Segment``)."""
        self.tick(time)
        self.place(frame, time, segment)

    def tick(self, time):
        """Capture time moves on (once per segment): now and then, sweep."""
        if time - self.now > self._jump and self.now:
            ahead, self._ahead = self._ahead, time
            if ahead is None or abs(time - ahead) > self._jump:
                return            # one packet far ahead: wait for another to say so
        self._ahead = None
        self.now = time
        self._countdown -= 1
        if not self._countdown or time - self._swept > SWEEP_SECONDS:
            self._countdown = SWEEP_EVERY
            self._swept = time
            self.sweep()

    def run_budget(self):
        """(ticks left before a sweep is due, capture time of the last sweep): how
        far a packet loop may let segments pass without ``tick``."""
        return self._countdown, self._swept

    def end_run(self, countdown, time):
        """A packet loop let segments pass without ``tick`` (no sweep being due):
        the ticks it has left of ``run_budget`` and the last one's capture time."""
        self._countdown = countdown
        self.now = time

    def place(self, frame, time, segment, wire=None):
        """A decoded segment, after ``tick``: to its connection (``wire``: its
        ``wire_key``, when the caller has it already)."""
        src, dst, sport, dport, seq, ack, flags, _, payload, missing = segment
        entry = self._find(wire_key(src, sport, dst, dport) if wire is None else wire)
        if flags & ICMP_QUOTE:
            if entry is None:
                self._open((src, sport, dst, dport), frame, time, 0, seq, quoted=True)
            return
        side = entry.side if entry is not None else None
        if side is None or flags & SYN or side.first_seq < 0:
            entry = self._place((src, sport, dst, dport), frame, time, flags, seq, entry)
            if entry is None:
                return
        conn = entry.connection
        conn.packet(entry.side, entry.peer, frame, time, seq, ack, flags, payload, missing)
        if conn.socks is not None and payload:
            self._socks(conn, entry.side is conn.a, payload)

    def entry(self, wire):
        """The Entry of a direction by its ``wire_key`` (None: no such connection open,
        or one whose packets must all take ``place``: a SOCKS handshake)."""
        return self.by_wire.get(wire)

    def find(self, src, sport, dst, dport):
        """The Entry of the open connection with this direction (None: none)."""
        return self._find(wire_key(src, sport, dst, dport))

    def _find(self, wire):
        entry = self.by_wire.get(wire)
        if entry is None and self._socks_wire:
            return self._socks_wire.get(wire)
        return entry

    def packet(self, frame, time, src, dst, sport, dport, seq, ack, flags, payload, missing):
        """A segment given field by field."""
        self.segment(frame, time, (src, dst, sport, dport, seq, ack, flags, 0, payload, missing))

    def _place(self, key, frame, time, flags, seq, entry):
        """The entry of a segment that may open, reopen or start a connection."""
        if entry is None:
            entry = self._open(key, frame, time, flags, seq)
            if entry is None:
                return None
        elif entry.connection.quoted:
            entry.connection.first_packet(time, flags)
        elif flags & (SYN | ACK) == SYN and entry.side.first_seq >= 0 \
                and seq != entry.side.first_seq:
            # a new connection on the same 4-tuple
            self._end(entry.connection, "port reuse")
            entry = self._open(key, frame, time, flags, seq)
        side = entry.side
        if side.first_seq < 0:
            side.first_seq = seq if flags & SYN else (seq - 1) & 0xFFFFFFFF
        if flags & SYN:
            if flags & ACK:
                side.synack = True
            else:
                side.syn = True
        return entry

    def _open(self, key, frame, time, flags, seq, quoted=False):
        src, sport, dst, dport = key
        wire, kept, tomb = self._tombstone(src, sport, dst, dport, self.tombstones.pop)
        retried = tomb is not None and flags & (SYN | ACK) == SYN and tomb.client_seq == seq \
            and (src, sport) == tomb.client
        if tomb is not None and (quoted or not flags & SYN or retried):
            if quoted or (tomb.kind == "closed" and not retried):
                # a late packet of an ended connection (or an ICMP error about it)
                self.tombstones[wire] = kept
                self.late_packets += not quoted
                return None
            # the same connection, woken after an idle timeout or its handshake
            # retried: reported again, as a continuation with the same stream
            # number and roles
            entry = self._new(tomb.stream, key, time, midstream=not retried)
            entry.connection.continued = True
            entry.connection.fix_roles(tomb.client)
        else:
            entry = self._new(self.streams, key, time, midstream=not flags & SYN)
            entry.connection.quoted = quoted
            self.streams += 1
        return entry

    def _new(self, stream, key, time, midstream):
        src, sport, dst, dport = key
        share = self.share
        bare = share is not None and share_of(src, sport, dst, dport, share[1]) != share[0]
        a, b = Side(src, sport, bare), Side(dst, dport, bare)
        conn = (Numbered if bare else Connection)(stream, a, b, time, self.on_record, midstream)
        self._bound(conn)
        entry = _tuple_new(Entry, (conn, a, b))
        into = self.by_wire
        if SOCKS_PORT in (sport, dport):
            # all its packets take place() until the SOCKS handshake is over
            conn.socks = SocksWatch(client_is_a=dport == SOCKS_PORT)
            into = self._socks_wire
        into[wire_key(src, sport, dst, dport)] = entry
        into[wire_key(dst, dport, src, sport)] = _tuple_new(Entry, (conn, b, a))
        return entry

    def _bound(self, conn):
        """A new connection: make room for it within the bounds (the oldest let go)."""
        opened, half = self._opened, self._half_open
        while len(half) >= self.max_half_open:
            old = half.popitem(last=False)[0]
            if old in opened and old.half_open:
                self.evictions["half_open"] += 1
                self._end(old, "evicted")
        # the least recently active goes (CLOCK: the oldest queued goes unless it had a
        # packet since it was queued, then it is queued again: amortised constant time,
        # each packet buying at most one second chance)
        chances = len(opened)
        while len(opened) >= self.max_connections:
            old, queued = next(iter(opened.items()))   # (an OrderedDict: constant time)
            if old.last > queued and chances:
                chances -= 1
                opened.move_to_end(old)
                opened[old] = self.now
                continue
            half.pop(old, None)
            self.evictions["connections"] += 1
            self._end(old, "evicted")
        opened[conn] = self.now
        half[conn] = None

    def anomalies(self):
        """What the bounds let go, in words (empty: nothing)."""
        said = []
        e = self.evictions
        if e["half_open"]:
            said.append(f"connection table: {e['half_open']} half-open connection(s) let go, oldest first "
                        f"(at most {self.max_half_open} kept: a SYN flood or a scan?)")
        if e["connections"]:
            said.append(f"connection table: {e['connections']} connection(s) ended early, least recently "
                        f"active first (at most {self.max_connections} tracked at once)")
        if e["tombstones"]:
            said.append(f"connection table: {e['tombstones']} ended connection(s) forgotten, oldest first "
                        f"(at most {self.max_tombstones} remembered): a late packet of one opens a new stream")
        return said

    def tombstone(self, src, sport, dst, dport):
        """The ``Tombstone`` of the ended connection between these endpoints (either
        way round), or None."""
        return self._tombstone(src, sport, dst, dport, self.tombstones.get)[2]

    @staticmethod
    def _tombstone(src, sport, dst, dport, take):
        """(wire key, what is kept under it, Tombstone) found by ``take`` (the
        tombstones' get or pop) under either direction's wire key; (None, None, None)
        when there is none."""
        wire = wire_key(src, sport, dst, dport)
        value = take(wire, None)
        forward = value is not None
        if not forward:
            wire = wire_key(dst, dport, src, sport)
            value = take(wire, None)
            if value is None:
                return None, None, None
        stream, kind, time, client_first, client_seq = value
        # client_first: the client sent in the key's direction
        client = (src, sport) if client_first == forward else (dst, dport)
        return wire, value, Tombstone(stream, kind, time, client, client_seq)

    def _socks(self, conn, from_a, payload):
        """Wireshark's SOCKS dissector: a stream number for the proxied connection."""
        spend = conn.socks.payload(from_a, payload)
        if spend:
            self.streams += 1
            self.spent += 1
        if conn.socks.done:
            # the fused packet loop may take its packets from now on
            conn.socks = None
            for wire in _wire_keys(conn):
                self.by_wire[wire] = self._socks_wire.pop(wire)

    def _end(self, conn, reason):
        wire, back = _wire_keys(conn)
        by_wire = self._socks_wire if conn.socks is not None else self.by_wire
        by_wire.pop(wire, None)
        by_wire.pop(back, None)
        self._opened.pop(conn, None)
        kind = "idle" if reason in ("idle", "evicted") else "closed"
        client = conn.client
        tombstones = self.tombstones
        tombstones.pop(wire, None)
        if len(tombstones) >= self.max_tombstones:
            tombstones.popitem(last=False)
            self.evictions["tombstones"] += 1
        tombstones[wire] = (conn.stream, kind, conn.last, client is conn.a,
                            client.first_seq if client.syn else None)
        conn.end_reason = reason
        conn.finish()
        self.on_connection(conn)

    @property
    def connection_count(self):
        """TCP connections seen so far (stream numbers but those spent for SOCKS)."""
        return self.streams - self.spent

    def connections(self):
        """The open connections, each once."""
        return list(self._opened)

    def sweep(self):
        """Finish connections that ended a while ago or went idle."""
        for conn, reason in sorted(self._due(), key=_by_stream):
            self._end(conn, reason)
        # the half-open index: drop those that are no longer (amortised: each once)
        half = self._half_open
        if len(half) > 64 and len(half) * 2 > len(self._opened):
            self._half_open = OrderedDict((c, None) for c in half if c in self._opened and c.half_open)

    def _due(self):
        """(connection, reason) of each open connection that is due to end now."""
        now = self.now
        linger, idle_timeout = self.linger, self.idle_timeout
        due = []
        for conn in self._opened:
            if conn.ended_at is not None and now - conn.last > linger:
                due.append((conn, "closed"))
            elif now - conn.last > idle_timeout:
                due.append((conn, "idle"))
        return due

    def quiet(self, seconds):
        """A live source has sent nothing for ``seconds`` of wall-clock time (called
        between packets): after ``QUIET`` seconds, finish the connections that have
        ended, and those idle for ``idle_timeout`` counting the silence."""
        if seconds < QUIET:
            return
        now = self.now + seconds
        ended = [conn for conn in self.connections()
                 if conn.ended_at is not None or now - conn.last > self.idle_timeout]
        for conn in sorted(ended, key=lambda c: c.stream):
            self._end(conn, "closed" if conn.ended_at is not None else "idle")

    def finish(self):
        """End of the capture: finish every connection, in stream order, each let go
        once ended, not at the end. Each is tombstoned as any ended connection is (so
        that ``evictions`` counts the same), then the tombstones go: no packet follows."""
        ending = sorted(self._opened, key=lambda c: c.stream)
        self._half_open = OrderedDict()
        for i in range(len(ending)):
            conn, ending[i] = ending[i], None
            self._end(conn, "end of capture")
        self.tombstones = OrderedDict()
