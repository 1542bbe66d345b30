"""Capture files -> frames: the reader every input goes through.

``open_capture(path)`` opens a pcap (both byte orders, microsecond and nanosecond
magics) or pcapng capture, plain or gzip-compressed (detected by its magic
bytes, not its name), from a file or from standard input (``-``), streaming
with large reads and bounded memory. ``Capture.frames()`` yields each packet's
bytes; ``Capture.batches()`` yields each read with where its packets lie in it,
for a loop that does not copy them out.

A capture that is cut short or corrupt in the middle never raises out of
``frames()`` or ``batches()``: iteration stops, everything before the damage has
been yielded, and a one-line message naming the file is appended to
``Capture.errors``.  Only an input that cannot be read as a capture at all raises
``CaptureError`` from ``open_capture``.
"""
import os
import stat
import sys
from typing import NamedTuple

from . import pcap, pcapng
from .formats import (BYTE_ORDER_MAGICS, GZIP_MAGIC, LINKTYPE_NAMES, PCAP_HEADER_LENGTH,
                      PCAP_MAGICS, PCAP_MODIFIED_MAGICS, PCAPNG_MAGIC, SHB_LENGTH)
from .streams import Cut, GzipSource, RawSource, read_at_least

__all__ = ["CaptureError", "Capture", "Frame", "open_capture"]


class Frame(NamedTuple):
    """One captured packet."""

    number: int
    """Its frame number, 1-based, as Wireshark numbers frames (blocks that are no packets count too)."""
    time: float
    """Capture time, seconds since the epoch."""
    linktype: int
    """Its link type (``formats.LINKTYPE_*``)."""
    data: bytes
    """The captured bytes."""
    orig_len: int
    """Its length on the wire (more than ``len(data)`` when the snap length cut it)."""


class CaptureError(Exception):
    """The input cannot be read as a capture at all (message: one line naming the
    file and what is wrong)."""


class Capture:
    """One opened capture.  Iterate ``frames()`` once (a file path can be iterated
    again: it is reopened; standard input cannot)."""

    def __init__(self, path, fobj, stream, raw, buf, fmt, size, linktypes=None):
        self.path = path
        self.linktypes = linktypes       # the supported ones (None: no warnings)
        self.name = "<stdin>" if path == "-" else path
        self.format = fmt
        self.errors = []
        self.bytes_read = 0              # bytes of the (decompressed) stream consumed
        self.size = size
        self.compressed = isinstance(stream, GzipSource)
        self._fobj = fobj
        self._stream = stream
        self._raw = raw
        self._buf = buf
        self._used = False
        self._warned_linktypes = set()

    # bytes taken from the file itself (compressed when gzip): comparable to `size`
    @property
    def raw_bytes_read(self):
        return self._raw.count

    @property
    def live(self):
        """It is read from a pipe (standard input, a FIFO): it may be silent for a while."""
        return self._raw.pipe

    def on_quiet(self, callback):
        """On a pipe, have ``callback(seconds)`` called while no byte has come for that
        long, every ``streams.QUIET_POLL`` seconds (between two reads: never while a
        read's packets are being handed out)."""
        self._raw.on_quiet = callback

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<Capture {self.name!r} {self.format}>"

    def close(self):
        f, self._fobj = self._fobj, None
        if f is not None and self.path != "-":
            try:
                f.close()
            except OSError:
                pass

    def frames(self):
        """Iterator of ``Frame``s, one per packet.  Damage stops it and is reported
        in `errors`; it never raises."""
        for buf, packets in self.batches():
            for start, incl, orig, time, n, linktype in packets:
                yield Frame(n, time, linktype, buf[start:start + incl], orig)

    def batches(self):
        """Iterator of (buf, packets): the packets of one read, without copying them
        out of it.  ``packets`` is a list of (start, captured length, orig_len,
        timestamp, frame_number, linktype): the packet's bytes are
        ``buf[start:start + captured length]``.  Like ``frames()``, which it
        underlies: damage stops it and is reported in `errors`; it never raises.
        (Plain tuples, not ``Frame``s: the fused packet loop reads one per packet.)"""
        if self._used:
            if self.path == "-" or self.size is None:
                return iter(())          # standard input or a pipe cannot be read twice
            self.close()
            self.errors.clear()
            self._warned_linktypes.clear()
            self.bytes_read = 0
            try:
                again = open_capture(self.path, self.linktypes)      # a file can be read again
            except CaptureError as e:
                self.errors.append(str(e))
                return iter(())
            self._fobj, self._stream, self._raw, self._buf = (
                again._fobj, again._stream, again._raw, again._buf)
        self._used = True
        walk = pcap.batches if self.format == "pcap" else pcapng.batches
        buf, self._buf = self._buf, None
        return walk(self, buf, self._stream)

    # ------------------------------------------- what the readers tell (pcap.py, pcapng.py)
    def error(self, msg):
        self.errors.append(f"{self.name}: {msg}")

    def cut(self, frame, offset, what):
        self.error(f"capture cut short at frame {frame} (byte offset {offset}): {what}")

    def stopped(self, exc, frame, offset):
        """Reading stopped on ``exc``: a cut stream, or anything else, said in one line."""
        if isinstance(exc, Cut):
            self.cut(frame, offset, str(exc))
        else:
            self.error(f"error reading frame {frame} (byte offset {offset}): "
                         f"{type(exc).__name__}: {exc}")

    def check_linktype(self, lt):
        """A link type the capture uses: one line the first time it is one that is not supported."""
        if self.linktypes is not None and lt not in self.linktypes \
                and lt not in self._warned_linktypes:
            self._warned_linktypes.add(lt)
            name = LINKTYPE_NAMES.get(lt, "unknown")
            self.error(f"link type {lt} ({name}) is not supported: "
                       "its frames are skipped")


# ------------------------------------------------------------------------- opening

def open_capture(path, linktypes=None):
    """Open a pcap or pcapng capture, plain or gzip-compressed; '-' is standard input.
    Raises CaptureError when the input cannot be read as a capture at all.
    ``linktypes``: the link types the caller can decode; the first frame of any
    other is reported in ``errors``."""
    name = "<stdin>" if path == "-" else path
    size = None
    if path == "-":
        fobj = getattr(sys.stdin, "buffer", None)
        if fobj is None:
            raise CaptureError(f"{name}: standard input is not available")
        raw = RawSource(fobj, pipe=True)
    else:
        try:
            fobj = open(path, "rb", buffering=0)
        except OSError as e:
            raise CaptureError(f"{name}: cannot open: {e.strerror or e}") from None
        try:
            st = os.fstat(fobj.fileno())
            if stat.S_ISREG(st.st_mode):
                size = st.st_size
            raw = RawSource(fobj, pipe=size is None)
        except OSError as e:
            fobj.close()
            raise CaptureError(f"{name}: cannot open: {e.strerror or e}") from None

    def fail(msg):
        if path != "-":
            fobj.close()
        raise CaptureError(f"{name}: {msg}")

    try:
        head = read_at_least(raw, b"", 4)
        stream = raw
        if head[:2] == GZIP_MAGIC:
            stream = GzipSource(raw, head)
            head = b""
        head = read_at_least(stream, head, SHB_LENGTH)
    except Cut as e:
        fail(f"{e} before the capture header")
    except OSError as e:
        fail(f"cannot read: {e.strerror or e}")
    except Exception as e:
        fail(f"cannot read: {type(e).__name__}: {e}")
    damage = getattr(stream, "cut", None)    # compressed data damaged after these bytes
    if damage is not None and len(head) < SHB_LENGTH \
            and not (head[:4] in PCAP_MAGICS and len(head) >= PCAP_HEADER_LENGTH):
        fail(f"{damage} before the capture header")
    compressed = " (gzip-compressed)" if stream is not raw else ""
    if not head:
        fail(f"empty file{compressed}: not a pcap or pcapng capture")
    magic = head[:4]
    if magic in PCAP_MAGICS:
        if len(head) < PCAP_HEADER_LENGTH:
            fail(f"pcap file header cut short ({len(head)} of {PCAP_HEADER_LENGTH} bytes)")
        fmt = "pcap"
    elif magic == PCAPNG_MAGIC:
        if len(head) < SHB_LENGTH:
            fail(f"pcapng section header block cut short ({len(head)} of {SHB_LENGTH} bytes)")
        bom = head[8:12]
        if bom not in BYTE_ORDER_MAGICS:
            fail(f"pcapng section header with a bad byte-order magic ({bom.hex(' ')})")
        fmt = "pcapng"
    else:
        shown = head[:4].hex(" ")
        what = "not a pcap or pcapng capture"
        if magic in PCAP_MODIFIED_MAGICS:
            what = "a modified (Kuznetzov) pcap, which is not supported"
        fail(f"{what}{compressed} (starts with {shown})")
    return Capture(path, fobj, stream, raw, head, fmt, size, linktypes)

