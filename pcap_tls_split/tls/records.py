"""Side stream -> TLS records: the sans-IO record tracker.

Theory of operation
-------------------
A ``RecordTracker`` follows one side stream of one connection. It is fed the
side's bytes in stream order, each chunk tagged with the frame that first
carried it (``data``), the holes the capture never filled (``gap``), and the
end of the stream (``end``). It returns the ``Record``s it completed. It never
reads a file, prints or sleeps.

It is in one of four modes:

- ``SEEK``: TLS has not started. It looks for the start of a TLS handshake (a
  handshake record holding a ClientHello or ServerHello, or a lone alert),
  which is where TLS begins both at the first byte and after a plaintext
  STARTTLS prologue (SMTP, IMAP, POP3, FTP, XMPP, LDAP, PostgreSQL...). An
  SSLv2-format ClientHello at the very start is a record of type ``sslv2``
  (2-byte header), followed by TLS records; a pure SSL 2.0 connection (its
  ClientHello or SERVER-HELLO says version 2.0) is framed as SSLv2 records
  to its end. After
  ``SEEK_LIMIT`` bytes without TLS the side is not TLS (``OFF``).
- ``SYNC``: it knows where the next record header is and follows the record
  framing: header (5 bytes, possibly split over segments), then body.
- ``RESYNC``: framing was lost (the capture started mid-stream, a gap
  swallowed a header, or a header made no sense). A position is accepted as a
  record header when the header is plausible and another plausible header of
  the same version follows right after its body (or the stream ends exactly
  there). The chunks since the earliest candidate are kept (bounded by one
  record) and replayed through ``SYNC`` once a candidate is confirmed, so the
  records found there have exact segments too. A candidate can only be
  confirmed within one record's span (5 + ``MAX_RECORD_LENGTH`` bytes) of its
  start, so the live ones lie in the last such span of the stream: at most one
  per 3 bytes of it (``_Candidates``). Each is added, tested and dropped once,
  in constant or logarithmic time, so resynchronising costs the same per byte
  however many bytes look like a header.
- ``OFF``: not TLS: bytes are dropped.

A completed record is held back until the next record starts, to learn
whether the two share a segment (``coalesced``); ``gap`` and ``end`` flush it.

Most bytes of a TLS stream are the middle of a record body the tracker does
not read (application data): ``in_body(offset)`` says how many such bytes
are left at ``offset``, ``skip_body`` takes a segment of them, and a caller
that fuses a run of such segments hands the tracker where the run ended with
``end_body_run``. Those three are the only ways in to the record in progress
besides ``data``.
Only the bytes of a record header in progress, the bodies of clear handshake
and alert records (parsed as they arrive) and, while resynchronising, one
record's worth of chunks are ever held.
"""

import heapq
from bisect import bisect_right
from types import MappingProxyType
from typing import NamedTuple

from . import wire
from .wire import (ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, CLIENT_HELLO, CLIENT_HELLO_BODY,
                   HANDSHAKE, HEADER_LENGTH, HEARTBEAT, MAX_RECORD_LENGTH, SERVER_HELLO,
                   TLS_START, HandshakeReader, parse_header, tls_start)

SEEK, SYNC, RESYNC, OFF = "seek", "sync", "resync", "off"
SSLV2_ONE, SSLV2_ALL = 1, 2     # SSLv2-format records: the first one only, or all
NOTHING = ()

# How far into a side stream TLS may start (a STARTTLS prologue is far shorter).
SEEK_LIMIT = 1 << 16
# Bytes of the previous chunks kept while seeking: enough for a start pattern
# that straddles chunks.
SEEK_TAIL = 16


class Record(NamedTuple):
    """One TLS record of a side stream, placed against the segments that carried it
    (immutable: a named tuple, cheap to make, one per record)."""

    index: int
    """Position among this side's records, from 0."""
    offset: int
    """Where its 5-byte header starts in the side stream (bytes from the first byte after the SYN)."""
    type: int
    """Content type from the header: 20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data, 24 heartbeat; ``"sslv2"`` for an SSLv2-format record."""
    version: int
    """Version from the header (0x0301 for TLS 1.0 ... 0x0303; TLS 1.3 records say 0x0303)."""
    length: int
    """Body length from the header (the record spans ``header_length + length`` bytes)."""
    frames: tuple
    """Frame numbers (1-based, as Wireshark shows them) of the first transmissions that carried its bytes, in stream order."""
    segment_ends: tuple
    """For each of ``frames``: the side-stream offset just past the last byte of this record that frame carried."""
    header_frames: int
    """How many segments carried the 5 header bytes (more than 1: a split header)."""
    first_time: float
    """Capture time of its first byte."""
    last_time: float
    """Capture time of its last byte: when it was complete."""
    coalesced: bool
    """It shares a segment with the end or start of another record."""
    missing: int = 0
    """Bytes of it the capture did not hold (a gap or a frame cut by the snap length)."""
    messages: tuple = ()
    """Handshake message types that start in it (handshake records in the clear only)."""
    alert: tuple = None
    """``(level, description)`` of an alert in the clear."""
    complete: bool = True
    """False for a record the stream ended inside of (its header announced more bytes)."""
    received: int = 0
    """Bytes of it (header included) the stream carried, for an incomplete record."""
    header_length: int = HEADER_LENGTH
    """Bytes of its header: 5 (2 or 3 for an SSLv2-format record)."""

    @property
    def end(self):
        """The side-stream offset just past its last byte."""
        return self.offset + self.header_length + self.length

    @property
    def size(self):
        """Its bytes, header included, as its header announces them."""
        return self.header_length + self.length

    @property
    def straddling(self):
        """Its bytes came in more than one segment."""
        return len(self.frames) > 1

    @property
    def header_split(self):
        """Its 5 header bytes came in more than one segment."""
        return self.header_frames > 1

    @property
    def first_frame(self):
        return self.frames[0] if self.frames else 0

    @property
    def last_frame(self):
        return self.frames[-1] if self.frames else 0


_new_record = tuple.__new__   # Record(*fields) from a list of all its fields (Record._make, one call less)


class RecordTracker:
    """Cuts one side stream into TLS records; see the module docstring."""

    # slots: one tracker a side of every TLS connection open (no per-instance dict)
    __slots__ = ("alpn", "alpn_offered", "broken", "ccs_seen", "cipher", "client_hello",
                 "client_random", "count", "desyncs", "hello_retry", "mode", "partial", "pos",
                 "server_version", "sni", "sslv2_hello", "tls_start", "_alert_bytes", "_body_left",
                 "_candidates", "_coalesced_prev", "_cur_ends", "_cur_frames", "_first_time",
                 "_handshake", "_hdr", "_hdr_frames", "_held", "_hlen", "_hs_probe", "_last_time",
                 "_length", "_log", "_log_done", "_messages", "_missing", "_parse_handshake",
                 "_reading", "_sslv2", "_start", "_type", "_version")

    def __init__(self, midstream=False):
        self.mode = RESYNC if midstream else SEEK
        self.pos = 0                  # stream offset of the next byte expected
        self.tls_start = None         # where TLS began, once found
        self.sslv2_hello = None       # version of an SSLv2-format ClientHello, if one came
        self.server_version = None    # version negotiated by this side's ServerHello
        self.hello_retry = False      # this side sent a HelloRetryRequest
        self.client_hello = False     # this side sent a ClientHello
        self.client_random = None     # ... its 32-byte random (the key of key log lines)
        self.sni = None               # ... the server name it asked for
        self.alpn_offered = ()        # ... the ALPN protocols it offered
        self.cipher = None            # the cipher suite this side's ServerHello selected
        self.alpn = None              # the ALPN protocol it selected (in clear: up to TLS 1.2)
        self.ccs_seen = False         # this side sent a change_cipher_spec record
        self.desyncs = 0              # times record framing was lost (then resynchronised)
        self.broken = 0               # ... of those, by a header that made no sense (not a gap)
        self.count = 0                # records completed
        self.partial = None           # the incomplete record at the end of the stream
        self._handshake = None        # HandshakeReader of its clear handshake, made with its first bytes
        self._sslv2 = 0               # SSLv2-format records: none, SSLV2_ONE (the hello), SSLV2_ALL
        self._held = None             # completed record waiting for the next one to start
        self._log = []                # (offset, payload|None, frame|length, time): chunks kept while seeking/resynchronising
        self._candidates = self._new_candidates() if midstream else None  # RESYNC only: the headers that may be where framing is
        self._log_done = 0            # RESYNC: chunks at the start of _log no longer needed
        self._reset_record()

    def _new_candidates(self):
        """The RESYNC candidates, made as RESYNC begins (None outside it)."""
        return _Candidates()

    def counters(self):
        """Everything it knows and counts, by name (for tests and diagnostics)."""
        return {"mode": self.mode, "pos": self.pos, "tls_start": self.tls_start,
                "sslv2_hello": self.sslv2_hello, "server_version": self.server_version,
                "hello_retry": self.hello_retry, "client_hello": self.client_hello,
                "client_random": self.client_random, "sni": self.sni,
                "alpn_offered": self.alpn_offered, "cipher": self.cipher, "alpn": self.alpn,
                "ccs_seen": self.ccs_seen, "desyncs": self.desyncs, "broken": self.broken,
                "count": self.count,
                "partial": self.partial, "held": self._held, "record_start": self._start,
                "header": self._hdr, "header_frames": self._hdr_frames, "type": self._type,
                "length": self._length, "body_left": self._body_left,
                "frames": list(self._cur_frames), "ends": list(self._cur_ends),
                "first_time": self._first_time, "last_time": self._last_time,
                "missing": self._missing, "reading": self._reading}

    @property
    def tunnelled(self):
        """TLS found after a prologue whose framing keeps breaking on captured bytes
        (not at capture gaps): TLS carried inside another protocol's frames
        (WebSocket, OpenVPN over TCP), not TLS on this stream."""
        return bool(self.tls_start) and self.broken >= 2 and 4 * self.broken >= self.count

    # -- inputs ---------------------------------------------------------------

    def in_body(self, offset):
        """Body bytes of the record in progress still to come, when the tracker is
        at ``offset`` in the middle of a record body it does not read; else 0."""
        if offset == self.pos and self.mode == SYNC and self._type is not None and not self._reading:
            return self._body_left
        return 0

    def skip_body(self, offset, size, frame, time):
        """``size`` bytes at ``offset`` of the body in progress, carried by ``frame``;
        only when ``size < in_body(offset)`` (they do not finish the record)."""
        self._body_left -= size
        end = self.pos = offset + size
        if self._cur_frames[-1] == frame:
            self._cur_ends[-1] = end
        else:
            self._cur_frames.append(frame)
            self._cur_ends.append(end)
        self._last_time = time

    def end_body_run(self, frames, ends, end, left, time):
        """A caller skipped body bytes segment by segment, as ``skip_body`` would
        have, each in a new frame: ``frames`` and their record ``ends``, the
        stream offset ``end`` reached, the body bytes ``left`` (> 0) and the last
        segment's ``time``."""
        self._cur_frames += frames
        self._cur_ends += ends
        self.pos = end
        self._body_left = left
        self._last_time = time

    def data(self, offset, payload, frame, time):
        """Bytes of the stream at ``offset`` (== the end of what was fed before), first carried by ``frame``."""
        size = len(payload)
        if size < self.in_body(offset):
            self.skip_body(offset, size, frame, time)   # the common case
            return NOTHING
        out = []
        if offset != self.pos:  # a caller that skipped bytes: treat them as a gap
            if offset > self.pos:
                out += self.gap(self.pos, offset - self.pos)
            else:
                payload = payload[self.pos - offset:]
                offset = self.pos
        if payload:
            self._feed(offset, payload, frame, time, out)
        return out

    def gap(self, offset, length):
        """Bytes ``[offset, offset + length)`` of the stream were never captured."""
        out = []
        if length <= 0:
            return out
        if self.mode == RESYNC:
            # a candidate whose record ends exactly where the hole begins is
            # confirmed by it, as by the end of the stream (a side that starts
            # mid-stream with one whole record, then a hole)
            start = self._candidates.first_followed_at(offset)
            if start is not None:
                self._sync_at(start, out)
        if self.mode == SYNC:
            self._gap_in_sync(length, out)
        elif self.mode == OFF:
            pass
        else:
            if self.mode == SEEK:
                # the start of TLS may be in the hole: look for any record framing
                self.mode = RESYNC
                self._log = []
                self._candidates = self._new_candidates()
            self._log.append((offset, None, length, None))
            # a candidate whose next header (or its own, cut short) is in the hole cannot be confirmed
            self._candidates.drop_before(offset + length)
            self._trim_log()
        self.pos = offset + length
        return out

    def end(self):
        """The side stream ends here (its FIN, RST, or the end of the capture)."""
        out = []
        if self.mode == RESYNC:
            start = self._candidates.first_followed_at(self.pos)
            if start is not None:
                self._sync_at(start, out)
        self._flush(out)
        if self.mode == SYNC and (self._hdr or self._cur_frames):
            self.partial = self._make_record()
        return out

    # -- modes ----------------------------------------------------------------

    def _feed(self, offset, payload, frame, time, out):
        mode = self.mode
        if mode == SYNC:
            self._feed_sync(payload, frame, time, out)
        elif mode == SEEK:
            self._seek(offset, payload, frame, time, out)
        elif mode == RESYNC:
            self._resync(offset, payload, frame, time, out)
        else:
            self.pos = offset + len(payload)

    def _seek(self, offset, payload, frame, time, out):
        log = self._log
        log.append((offset, payload, frame, time))
        if offset == 0 and len(log) == 1 and TLS_START.match(payload) is not None:
            self._sync_at(0, out)   # the common case: a handshake from the first byte on
            return
        size = len(payload)
        self.pos = offset + size
        window_start = log[0][0]
        if len(log) == 2 and type(log[0][1]) is bytes:
            window = log[0][1] + payload   # (the common case: the tail kept, then this chunk)
        else:
            window = b"".join([bytes(chunk[1]) for chunk in log])
        if window_start == 0 and window and window[0] & 0x80:
            # an SSLv2-format ClientHello at the very start (RFC 6101 appendix E.1),
            # or the SERVER-HELLO of a pure SSL 2.0 connection
            try:
                hello = wire.sslv2_client_hello_length(window)
            except wire.MalformedTLS:
                hello = False
            server = wire.sslv2_server_hello(window) if hello is False else False
            if hello is None or server is None:
                return  # wait for its first bytes
            if hello or server:
                if hello:
                    self.sslv2_hello = hello[1]
                    self.client_hello = True
                pure = server or hello[1] == wire.SSLV2_VERSION
                # its records: SSLv2 to the end (pure SSL 2.0), or this one, then TLS
                self._sslv2 = SSLV2_ALL if pure else SSLV2_ONE
                self._sync_at(0, out)
                return
        start = tls_start(window)
        if start != -1:
            self._sync_at(window_start + start, out)
            return
        if self.pos > SEEK_LIMIT:
            self.mode = OFF  # no TLS handshake near the start: not TLS
            self._log = ()
            return
        # keep only the tail a pattern straddling into the next chunk needs (of a
        # chunk, its bytes from there on: a side of 1,460 bytes that is not TLS
        # yet keeps 16; the SSLv2 test above has had its first 7 bytes)
        keep_from = self.pos - SEEK_TAIL
        if size >= SEEK_TAIL:         # (the common case: this chunk holds the whole tail)
            del log[:-1]
            log[0] = (keep_from, window[-SEEK_TAIL:], frame, time)
            return
        log = [c for c in log if c[0] + len(c[1]) > keep_from]
        first = log[0]                # (the last chunk ends at pos: the list is not empty)
        if first[0] < keep_from:
            log[0] = (keep_from, bytes(first[1][keep_from - first[0]:]), first[2], first[3])
        self._log = log

    def _resync(self, offset, payload, frame, time, out):
        log = self._log
        log.append((offset, payload, frame, time))
        end = offset + len(payload)
        self.pos = end
        candidates = self._candidates
        # new candidate headers: scan this chunk with the few bytes before it (if
        # they were captured)
        before = log[-2] if len(log) > 1 else None
        contiguous = before is not None and before[1] is not None and before[0] + len(before[1]) == offset
        tail_start = max(offset - 4, before[0]) if contiguous else offset
        window = self._window(tail_start, end)
        size = len(window)
        plausible = set()             # where a whole plausible header lies in the window
        found = []                    # new candidates: (start, version, next header offset)
        for match in wire.HEADER_START.finditer(window):
            at = match.start()
            start = tail_start + at
            # (only one cut at the end of the last chunk can be a candidate already)
            if at + 5 > size:         # cut at the end of the chunk: completed by the next one
                if not (start < offset and start in candidates):
                    found.append((start, None, None))
                continue
            length = window[at + 3] << 8 | window[at + 4]
            if length > MAX_RECORD_LENGTH:
                continue
            plausible.add(start)
            if length and not (start < offset and start in candidates):
                found.append((start, (window[at + 1] << 8) | window[at + 2], start + 5 + length))
        if found:
            candidates.add_all(found)
        # complete candidates whose header was cut at the end of the last chunk
        if candidates.cut:
            for start in candidates.take_cut(end):
                self._add_candidate(start, self._window(start, start + 5))
        # confirm: a plausible header right after the candidate's body; the first
        # (by start) of those whose next header is here now wins
        testable = candidates.pop_followed_before(end - 4)
        if testable:
            confirmed = None
            for start, following in testable:
                if following >= tail_start:
                    followed = following in plausible
                else:                 # (after a chunk of fewer than 4 bytes)
                    try:
                        followed = bool(parse_header(self._window(following, following + 5)))
                    except wire.MalformedTLS:
                        followed = False
                if followed and (confirmed is None or start < confirmed):
                    confirmed = start
            if confirmed is not None:
                self._sync_at(confirmed, out)
                return
        if self.tls_start is None and self.pos > SEEK_LIMIT:
            self.mode = OFF  # never found any record framing: not TLS
            self._log = ()
            self._candidates = None
            return
        self._trim_log()

    def _add_candidate(self, start, header):
        try:
            parsed = parse_header(header)
        except wire.MalformedTLS:
            return
        if parsed and parsed[2] > 0:
            self._candidates.complete(start, parsed[1], start + 5 + parsed[2])

    def _window(self, start, end):
        """The logged bytes in ``[start, end)``, cut short where a gap begins."""
        parts = []
        expected = start
        log = self._log
        # the first chunk that ends after start: mostly one of the last few
        i = len(log)
        while i and _chunk_end(log[i - 1]) > start:
            i -= 1
            if len(log) - i > 8:
                i = bisect_right(log, start, 0, i, key=_chunk_end)
                break
        for i in range(i, len(log)):
            chunk_offset, payload = log[i][0], log[i][1]
            if payload is None:
                continue
            chunk_end = chunk_offset + len(payload)
            if chunk_end <= expected:
                continue
            if chunk_offset > expected or expected >= end:
                break
            parts.append(bytes(payload[expected - chunk_offset:end - chunk_offset]))
            expected = min(chunk_end, end)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _trim_log(self):
        """Keep the chunks the earliest live candidate needs (or the last 4 bytes).
        Chunks before them are dropped once they are half the log (constant time
        per chunk); until then they are never read again."""
        earliest = self._candidates.earliest()
        keep_from = self.pos - 4 if earliest is None else earliest
        log = self._log
        # chunks end in order: if the one before _log_done ends before keep_from,
        # so do all before it (whatever happened to the log since)
        done = self._log_done
        if done > len(log) or done and _chunk_end(log[done - 1]) > keep_from:
            done = bisect_right(log, keep_from, key=_chunk_end)
        else:
            while done < len(log) and _chunk_end(log[done]) <= keep_from:
                done += 1
        if done and 2 * done >= len(log):
            del log[:done]
            done = 0
        self._log_done = done
        if earliest is None:
            # no candidate: of the last chunk, only the bytes from keep_from on are read
            # again (a flood of mid-stream sides keeps 4 bytes a side, not a segment)
            last = log[-1]
            if last[1] is not None and last[0] < keep_from and len(last[1]) > 64:
                log[-1] = (keep_from, bytes(last[1][keep_from - last[0]:]), last[2], last[3])

    def _sync_at(self, start, out):
        """Framing found at ``start``: replay the kept chunks from there in SYNC."""
        log, self._log = self._log, ()   # (only SEEK and RESYNC log chunks)
        self._candidates = None
        if self.tls_start is None:
            self.tls_start = start
        self.mode = SYNC
        self.pos = start
        self._reset_record()
        for chunk_offset, payload, frame, time in log:
            if payload is None:
                if chunk_offset + frame > start:
                    cut = max(start, chunk_offset)
                    out += self.gap(cut, chunk_offset + frame - cut)
                continue
            chunk_end = chunk_offset + len(payload)
            if chunk_end <= start:
                continue
            cut = max(start, chunk_offset)
            if cut < self.pos:  # already replayed (a nested resync)
                if chunk_end <= self.pos:
                    continue
                cut = self.pos
            self._feed(cut, payload[cut - chunk_offset:], frame, time, out)

    # -- SYNC: record framing -------------------------------------------------

    def _reset_record(self):
        # The record in progress. Invariants in SYNC: ``_type`` is None until its
        # 5 header bytes are in ``_hdr``; from then on ``_cur_frames`` (with
        # ``_cur_ends``, the same length) is not empty and ``_body_left`` body
        # bytes are still to come; ``_reading`` says the body's bytes are parsed
        # (clear handshake, alert), so they cannot be skipped. Between records
        # ``_cur_frames``, ``_cur_ends`` and ``_messages`` are empty tuples (a
        # side waiting for its peer keeps no lists): lists from the first byte on.
        self._start = self.pos
        self._hdr = b""
        self._hlen = HEADER_LENGTH   # the header's length (an SSLv2 one: 2 or 3)
        self._hdr_frames = 0
        self._type = self._version = self._length = None
        self._body_left = 0
        self._cur_frames = self._cur_ends = ()
        self._first_time = self._last_time = None
        self._missing = 0
        self._messages = ()
        self._alert_bytes = None
        self._parse_handshake = False
        self._hs_probe = None
        self._reading = False         # the body's bytes are parsed (clear handshake, alert)
        self._coalesced_prev = False

    def _touch(self, frame, time, end, out):
        """Note that ``frame`` carried this record's bytes up to ``end``."""
        frames = self._cur_frames
        if not frames:
            self._first_time = time
            if self._held is not None:
                self._coalesced_prev = self._release(frame, out)
            self._cur_frames = [frame]
            self._cur_ends = [end]
        elif frames[-1] == frame:
            self._cur_ends[-1] = end
        else:
            frames.append(frame)
            self._cur_ends.append(end)
        self._last_time = time

    def _feed_sync(self, payload, frame, time, out):
        pos, n = 0, len(payload)
        base = self.pos
        while pos < n:
            if self._type is None:
                if not self._hdr:
                    if n - pos >= 5 and not self._sslv2:
                        # the common case, at a record boundary: a whole record in this
                        # segment whose body is not read (application data, heartbeat,
                        # change_cipher_spec): held at once, as _touch, _complete and
                        # _reset_record would leave it, without their steps
                        content_type = payload[pos]
                        length = (payload[pos + 3] << 8) | payload[pos + 4]
                        if (content_type == APPLICATION_DATA or content_type == HEARTBEAT
                                or content_type == CHANGE_CIPHER_SPEC) and payload[pos + 1] == 3 \
                                and payload[pos + 2] <= 4 and length <= MAX_RECORD_LENGTH \
                                and n - pos - 5 >= length:
                            start = base + pos
                            end = start + 5 + length
                            shared = False
                            if self._held is not None:
                                shared = self._release(frame, out)
                            self._held = [self.count, start, content_type, 0x0300 | payload[pos + 2],
                                          length, (frame,), (end,), 1, time, time, shared, 0, (),
                                          None, True, 0, 5]
                            self.count += 1
                            if content_type == CHANGE_CIPHER_SPEC:
                                self.ccs_seen = True
                            self.pos = self._start = end
                            pos += 5 + length
                            continue
                    self._start = base + pos
                    hlen = self._hlen = wire.sslv2_header_length(payload[pos]) \
                        if self._sslv2 else HEADER_LENGTH
                    if n - pos >= hlen:
                        # the whole header in this segment (the common case)
                        self._hdr = bytes(payload[pos:pos + hlen])
                        pos += hlen
                        self._hdr_frames = 1
                    else:
                        self._hdr = bytes(payload[pos:])
                        pos = n
                        self._hdr_frames = 1
                else:
                    take = min(self._hlen - len(self._hdr), n - pos)
                    self._hdr += bytes(payload[pos:pos + take])
                    pos += take
                    if self._cur_frames[-1] != frame:
                        self._hdr_frames += 1
                self._touch(frame, time, base + pos, out)
                if len(self._hdr) < self._hlen:
                    continue
                try:
                    self._type, self._version, self._length = wire.parse_sslv2_header(self._hdr) \
                        if self._sslv2 else parse_header(self._hdr)
                except wire.MalformedTLS:
                    # framing lost: look for it again from the next byte on
                    self.desyncs += 1
                    self.broken += 1
                    self._flush(out)
                    self._reset_record()
                    self.mode = RESYNC
                    self.pos = base + pos
                    self._log = []
                    self._candidates = self._new_candidates()
                    if pos < n:
                        self._feed(base + pos, payload[pos:], frame, time, out)
                    return
                self._body_left = self._length
                self._begin_body()
                if not self._body_left:
                    self._complete()
                continue
            take = min(self._body_left, n - pos)
            if self._reading:
                self._read_body(payload[pos:pos + take])
            pos += take
            self._body_left -= take
            frames = self._cur_frames
            if frames[-1] == frame:  # a body always follows its header's bytes
                self._cur_ends[-1] = base + pos
                self._last_time = time
            else:
                frames.append(frame)
                self._cur_ends.append(base + pos)
                self._last_time = time
            if not self._body_left:
                self._complete()
        self.pos = base + n

    def _begin_body(self):
        content_type = self._type
        if content_type == HANDSHAKE:
            if self.ccs_seen:
                # after its change_cipher_spec a side's handshake records are
                # encrypted, but for a second ClientHello (TLS 1.3 after a
                # HelloRetryRequest, RFC 8446 appendix D.4): probe its first bytes
                self._hs_probe = b"" if self._length >= 4 else None
            else:
                self._parse_handshake = True
        elif content_type == ALERT and self._length == 2:
            self._alert_bytes = b""
        elif content_type == CHANGE_CIPHER_SPEC:
            self.ccs_seen = True
        self._reading = self._hs_probe is not None or self._parse_handshake or self._alert_bytes is not None

    def _read_body(self, chunk):
        if self._hs_probe is not None:
            need = 4 - len(self._hs_probe)
            self._hs_probe += bytes(chunk[:need])
            chunk = chunk[need:]
            if len(self._hs_probe) < 4:
                return
            head, self._hs_probe = self._hs_probe, None
            if head[0] == CLIENT_HELLO and int.from_bytes(head[1:4], "big") + 4 == self._length:
                self._parse_handshake = True
                self._read_handshake(head)
        if self._parse_handshake:
            self._read_handshake(chunk)
        elif self._alert_bytes is not None:
            self._alert_bytes += bytes(chunk)

    def _read_handshake(self, chunk):
        reader = self._handshake
        if reader is None:
            reader = self._handshake = HandshakeReader()
        messages = reader.feed(chunk)
        if reader.between_messages():
            self._handshake = None    # (a new one is the same: an open connection keeps none)
        for msg_type, body in messages:
            if msg_type == CLIENT_HELLO_BODY:
                if self.client_random is None:
                    try:
                        self.client_random, self.sni, self.alpn_offered = wire.client_hello(body)
                    except wire.MalformedTLS:
                        pass
                continue
            self._messages += (msg_type,)   # (a few per record)
            if msg_type == CLIENT_HELLO:
                self.client_hello = True
            elif msg_type == SERVER_HELLO and body is not None:
                try:
                    hello = wire.server_hello(body)
                except wire.MalformedTLS:
                    continue
                self.hello_retry = self.hello_retry or hello.retry
                if not hello.retry or self.server_version is None:
                    self.server_version = hello.version
                    self.cipher, self.alpn = hello.cipher, hello.alpn

    def _gap_in_sync(self, length, out):
        if self._type is not None and length <= self._body_left:
            # the hole is inside the body: framing survives
            self._body_left -= length
            self._missing += length
            if self._parse_handshake:
                self._handshake = None  # its message framing is lost: a new reader
            self._parse_handshake = self._reading = False
            self._hs_probe = self._alert_bytes = None
            if not self._body_left:
                self._complete()
            return
        if self._type is not None and self._body_left:
            # the hole runs past this record's end: it ends there, framing is lost
            self._missing += self._body_left
            self._body_left = 0
            self._complete()
        self._flush(out)
        self._reset_record()
        self.desyncs += 1
        self.mode = RESYNC
        self._log = []
        self._candidates = self._new_candidates()

    def _complete(self):
        """The record in progress is whole: hold it until the next one starts."""
        alert = None
        if self._alert_bytes is not None and len(self._alert_bytes) == 2:
            alert = (self._alert_bytes[0], self._alert_bytes[1])
        # Record's fields, all of them, in order; coalesced is settled when the next
        # record starts
        self._held = [self.count, self._start, self._type, self._version, self._length,
                      tuple(self._cur_frames), tuple(self._cur_ends), self._hdr_frames,
                      self._first_time, self._last_time, self._coalesced_prev, self._missing,
                      tuple(self._messages), alert, True, 0, self._hlen]
        self.count += 1
        self.pos = self._start + self._hlen + self._length
        if self._sslv2 == SSLV2_ONE:
            self._sslv2 = 0           # TLS records follow the SSLv2-format ClientHello
        self._reset_record()

    def _release(self, next_first_frame, out):
        """Emit the held record; return whether it shares ``next_first_frame``."""
        fields, self._held = self._held, None
        frames = fields[5]
        shared = next_first_frame is not None and bool(frames) and frames[-1] == next_first_frame
        if shared:
            fields[10] = True
        out.append(_new_record(Record, fields))
        return shared

    def _flush(self, out):
        if self._held is not None:
            self._release(None, out)

    def _make_record(self):
        if self._type is None:
            # stream ended inside a header: we know only what came
            received = len(self._hdr)
            length = 0
            content_type = self._hdr[0] if self._hdr else 0
            version = 0
        else:
            received = self._hlen + self._length - self._body_left - self._missing
            length, content_type, version = self._length, self._type, self._version
        return Record(index=self.count, offset=self._start, type=content_type,
                      version=version, length=length, frames=tuple(self._cur_frames),
                      segment_ends=tuple(self._cur_ends), header_frames=self._hdr_frames,
                      first_time=self._first_time, last_time=self._last_time,
                      coalesced=False, missing=self._missing,
                      messages=tuple(self._messages), complete=False,
                      received=received, header_length=self._hlen)


def _chunk_end(chunk):
    """Where a kept chunk (or hole) ends in the stream."""
    return chunk[0] + (chunk[2] if chunk[1] is None else len(chunk[1]))


_EMPTY = MappingProxyType({})


class _Candidates:
    """RESYNC's candidate record headers, by start.

    A candidate is ``start -> (version, next_header_offset)``, or ``(None, None)``
    while its header is cut at the end of the chunks so far. The candidates are
    kept in the order they were found (a cut one moves to the end when
    completed): at the end of the stream the first whose next header is
    exactly there wins (``by_following`` finds it). Besides, a heap by next
    header offset says which can be tested now, and the starts in order (a stream is scanned in order; those
    that left are skipped lazily) give the earliest one. Every live candidate
    starts within one record's span of the stream position, at least 3 bytes
    after the one before it, so there are never more than
    (10 + MAX_RECORD_LENGTH) / 3 of them.
    """

    __slots__ = ("by_start", "cut", "by_next", "by_following", "starts", "head")

    def __init__(self):
        self.clear()

    def clear(self):
        # empty and read-only until the first candidate (most sides resynchronising
        # find none: a flood of mid-stream garbage)
        self.by_start = _EMPTY
        self.cut = ()                 # starts of the cut ones, in the order found
        self.by_next = ()             # heap of (next header offset, start)
        self.by_following = _EMPTY    # next header offset -> starts, in the order found
        self.starts = ()              # starts in order from ``head`` on (some may have left)
        self.head = 0

    def _made(self):
        """The containers, made at the first candidate."""
        self.by_start, self.by_following = {}, {}
        self.by_next, self.starts = [], []

    def __len__(self):
        return len(self.by_start)

    def __contains__(self, start):
        return start in self.by_start

    def as_list(self):
        """(start, version, next header offset) of each, in order."""
        return [(start, *rest) for start, rest in self.by_start.items()]

    def add_all(self, found):
        """New candidates, in order: (start, version, next header offset), both
        None for one whose header is cut at the end of the chunks so far."""
        if self.by_start is _EMPTY:
            self._made()
        by_start, by_next, push = self.by_start, self.by_next, heapq.heappush
        by_following = self.by_following
        for start, version, following in found:
            by_start[start] = (version, following)
            if following is None:
                if not self.cut:
                    self.cut = []
                self.cut.append(start)
            else:
                push(by_next, (following, start))
                starts = by_following.get(following)
                if starts is None:
                    by_following[following] = [start]
                else:
                    starts.append(start)
        self._add_starts([start for start, _, _ in found])

    def complete(self, start, version, following):
        """A cut one (taken off with ``take_cut``) whose header is whole now."""
        self.by_start[start] = (version, following)
        heapq.heappush(self.by_next, (following, start))
        self.by_following.setdefault(following, []).append(start)

    def _add_starts(self, new):
        starts = self.starts
        while len(starts) > self.head and starts[-1] not in self.by_start:
            starts.pop()
        starts.extend(new)
        if len(starts) - self.head > len(new) and starts[-len(new) - 1] > new[0]:
            # a stream is scanned in order, so new starts come after the others;
            # if they ever did not, the starts are put in order again
            self.starts = sorted(set(starts[self.head:]))
            self.head = 0

    def take_cut(self, end):
        """Take off the cut ones whose 5 header bytes are now in (they end before ``end``)."""
        ready = [start for start in self.cut if start + 5 <= end]
        if ready:
            self.cut = [start for start in self.cut if start + 5 > end]
            for start in ready:
                del self.by_start[start]
        return ready

    def pop_followed_before(self, limit):
        """Take off those whose next header starts before ``limit``: [(start, next header offset)]."""
        by_next, by_start, by_following = self.by_next, self.by_start, self.by_following
        out = []
        while by_next and by_next[0][0] < limit:
            following, start = heapq.heappop(by_next)
            del by_start[start]
            starts = by_following[following]
            if len(starts) == 1:
                del by_following[following]
            else:
                starts.remove(start)
            out.append((start, following))
        return out

    def drop_before(self, limit):
        """A hole up to ``limit``: drop the cut ones and those whose next header
        starts before ``limit``."""
        for start in self.cut:
            del self.by_start[start]
        self.cut = ()
        self.pop_followed_before(limit)

    def earliest(self):
        """The smallest start (None: none)."""
        starts, by_start, head = self.starts, self.by_start, self.head
        while head < len(starts) and starts[head] not in by_start:
            head += 1
        if head > 64 and 2 * head > len(starts):
            del starts[:head]       # compacted: amortised constant time
            head = 0
        self.head = head
        return starts[head] if head < len(starts) else None

    def first_followed_at(self, offset):
        """The first (in order found) whose next header would start at ``offset``."""
        starts = self.by_following.get(offset)
        return starts[0] if starts else None
