"""Capture files -> frames.  The only module of the package that touches files.

Reads pcap (both byte orders, microsecond and nanosecond magics) and pcapng (several
sections of either byte order, several interfaces with their own link type,
``if_tsresol`` and ``if_tsoffset``; EPB, SPB and the obsolete Packet Block), plain
or gzip-compressed (detected by its magic bytes, not its name), from a file or from
standard input (``-``), streaming with large reads and bounded memory.
``frames()`` yields each packet's bytes; ``batches()`` yields each read with
where its packets lie in it, for a loop that does not copy them out.

A capture that is cut short or corrupt in the middle never raises out of
``frames()`` or ``batches()``: iteration stops, everything before the damage has
been yielded, and a one-line message naming the file is appended to
``Capture.errors``.  Only an input that cannot be read as a capture at all raises
``CaptureError`` from ``open_capture``.
"""
import os
import stat
import struct
import sys
import zlib

from .frame import SUPPORTED_LINKTYPES

__all__ = ["CaptureError", "Capture", "open_capture"]

CHUNK = 1 << 20                 # bytes asked of the stream per read
MAX_CAPLEN = 256 * 1024         # a bigger record length is a lie unless the snaplen says so
MAX_CAPLEN_HARD = 64 << 20      # ... and never more than this, whatever the snaplen says
MAX_BLOCK = 16 << 20            # pcapng block length limit (as Wireshark's)

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000000),       # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000000),
    b"\x4d\x3c\xb2\xa1": ("<", 1000000000),    # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1000000000),
}
PCAPNG_SHB = 0x0A0D0D0A
GZIP_MAGIC = b"\x1f\x8b"

# pcapng block types
BT_IDB, BT_PB, BT_SPB, BT_EPB = 1, 2, 3, 6
# Blocks that are no packets but that Wireshark (4.0) numbers as frames all the same:
# systemd journal export, sysdig events, custom blocks (checked with tshark 4.0.17)
FRAME_ONLY_BLOCKS = frozenset((0x00000009, 0x00000204, 0x00000216, 0x00000221,
                               0x00000BAD, 0x40000BAD))

LINKTYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 9: "PPP", 12: "RAW", 14: "RAW", 50: "PPP_HDLC",
    51: "PPP_ETHER", 101: "RAW", 104: "C_HDLC", 105: "IEEE802_11", 108: "LOOP",
    113: "LINUX_SLL", 117: "PFLOG", 119: "IEEE802_11_PRISM", 127: "IEEE802_11_RADIOTAP",
    147: "USER0", 163: "IEEE802_11_AVS", 192: "PPI", 195: "IEEE802_15_4",
    220: "USB_LINUX_MMAPPED", 228: "IPV4", 229: "IPV6", 249: "NETLINK",
    276: "LINUX_SLL2",
}


class CaptureError(Exception):
    """The input cannot be read as a capture at all (message: one line naming the
    file and what is wrong)."""


class _Cut(Exception):
    """The (compressed) stream itself ends early or is corrupt."""


# ------------------------------------------------------------------------- streams

class _RawSource:
    """A binary file object read with big reads; counts the bytes taken from it."""

    def __init__(self, fobj, pipe):
        self.fobj = fobj
        self.count = 0
        # read1 returns what a pipe has now instead of waiting for a full chunk
        self._read = getattr(fobj, "read1", None) if pipe else None
        if self._read is None:
            self._read = fobj.read

    def read(self, n):
        b = self._read(n)
        if b is None:                    # non-blocking file object with nothing ready
            b = b""
        self.count += len(b)
        return b


class _GzipSource:
    """Decompress a gzip stream (several members allowed) with bounded output per read."""

    def __init__(self, src, head):
        self.src = src
        self.tail = head                 # compressed bytes already taken from src
        self.d = None                    # decompressor of the current member
        self.first = True
        self.done = False
        self.cut = None                  # _Cut to raise once the data before it is out

    @property
    def count(self):
        return self.src.count

    def read(self, n):
        while True:
            if self.cut is not None:
                raise self.cut
            if self.done:
                return b""
            if self.tail:
                inp, self.tail = self.tail, b""
            else:
                inp = self.src.read(CHUNK)
                if not inp:
                    if self.d is not None:
                        self.cut = _Cut("compressed (gzip) stream ends early")
                        continue
                    self.done = True
                    return b""
            if self.d is None:           # at the start of a member
                if not self.first:
                    inp = inp.lstrip(b"\0")      # zero padding between/after members
                    if not inp:
                        continue
                    if inp[0] != 0x1F:
                        self.done = True         # trailing garbage: ignored, as gzip -d
                        return b""
                self.first = False
                self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = self.d.decompress(inp, n)
            except zlib.error as e:
                self.cut = _Cut(f"corrupt compressed (gzip) data ({e})")
                continue
            if self.d.eof:
                self.tail = self.d.unused_data
                self.d = None
            else:
                self.tail = self.d.unconsumed_tail
            if out:
                return out


def _read_at_least(stream, buf, n):
    """buf plus reads of the stream until it holds n bytes or the stream ends."""
    have = len(buf)
    if have >= n:
        return buf
    parts = [buf] if buf else []
    while have < n:
        try:
            b = stream.read(max(CHUNK, n - have))
        except _Cut:
            if len(parts) > 1:           # hand out what came first; the stream
                break                    # raises again on the next read
            raise
        if not b:
            break
        parts.append(b)
        have += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# ------------------------------------------------------------------------- capture

class Capture:
    """One opened capture.  Iterate ``frames()`` once (a file path can be iterated
    again: it is reopened; standard input cannot)."""

    def __init__(self, path, fobj, stream, raw, buf, fmt, size):
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self.format = fmt
        self.errors = []
        self.bytes_read = 0              # bytes of the (decompressed) stream consumed
        self.size = size
        self.compressed = isinstance(stream, _GzipSource)
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
        """Iterator of (frame_number, timestamp, linktype, data, orig_len), one per
        packet.  Damage stops it and is reported in `errors`; it never raises."""
        for buf, packets in self.batches():
            for start, incl, orig, time, n, linktype in packets:
                yield n, time, linktype, buf[start:start + incl], orig

    def batches(self):
        """Iterator of (buf, packets): the packets of one read, without copying them
        out of it.  ``packets`` is a list of (start, captured length, orig_len,
        timestamp, frame_number, linktype): the packet's bytes are
        ``buf[start:start + captured length]``.  Like ``frames()``, which it
        underlies: damage stops it and is reported in `errors`; it never raises."""
        if self._used:
            if self.path == "-":
                return iter(())          # standard input cannot be read twice
            self.close()
            self.errors.clear()
            self._warned_linktypes.clear()
            self.bytes_read = 0
            try:
                again = open_capture(self.path)      # a file can be read again
            except CaptureError as e:
                self.errors.append(str(e))
                return iter(())
            self._fobj, self._stream, self._raw, self._buf = (
                again._fobj, again._stream, again._raw, again._buf)
        self._used = True
        return self._pcap() if self.format == "pcap" else self._pcapng()

    # ---------------------------------------------------------------- helpers
    def _error(self, msg):
        self.errors.append(f"{self.name}: {msg}")

    def _cut(self, frame, offset, what):
        self._error(f"capture cut short at frame {frame} (byte offset {offset}): {what}")

    def _stopped(self, exc, frame, offset):
        """Reading stopped on ``exc``: a cut stream, or anything else, said in one line."""
        if isinstance(exc, _Cut):
            self._cut(frame, offset, str(exc))
        else:
            self._error(f"error reading frame {frame} (byte offset {offset}): "
                        f"{type(exc).__name__}: {exc}")

    def _check_linktype(self, lt, where=""):
        if lt not in SUPPORTED_LINKTYPES and lt not in self._warned_linktypes:
            self._warned_linktypes.add(lt)
            name = LINKTYPE_NAMES.get(lt, "unknown")
            self._error(f"link type {lt} ({name}){where} is not supported: "
                        "its frames are skipped")

    # ---------------------------------------------------------------- pcap
    def _pcap(self):
        buf = self._buf
        self._buf = None
        stream = self._stream
        endian, div = PCAP_MAGICS[buf[:4]]
        snaplen, network = struct.unpack_from(endian + "II", buf, 16)
        lt = network & 0x03FFFFFF        # upper bits: FCS length information
        self._check_linktype(lt)
        limit = max(MAX_CAPLEN, min(snaplen, MAX_CAPLEN_HARD))
        unpack = struct.Struct(endian + "IIII").unpack_from
        pos = 24
        base = 0                         # stream offset of buf[0]
        n = 0
        rest = None                      # a read's bytes after the record taken from it
        try:
            while True:
                end = len(buf)
                packets = []
                add = packets.append
                while pos + 16 <= end:
                    sec, frac, incl, orig = unpack(buf, pos)
                    nxt = pos + 16 + incl
                    if nxt > end or incl > limit:
                        break
                    n += 1
                    add((pos + 16, incl, orig, sec + frac / div, n, lt))
                    pos = nxt
                else:
                    incl = -1            # loop ended for want of a full header
                if packets:
                    yield buf, packets
                if incl > limit:
                    self._cut(n + 1, base + pos,
                              f"record length {incl} is larger than the maximum of "
                              f"{limit} (corrupt record header)")
                    return
                self.bytes_read = base + pos
                left = end - pos
                if rest is not None and not left:
                    # the record completed across two reads is done: on with the
                    # second read, not copied
                    base += end
                    buf, pos, rest = rest, rest_at, None
                    base -= pos
                elif rest is None and left >= 16:
                    # a record cut by the end of the read: complete it, alone, from
                    # the next read (copying that one record, not the whole read)
                    need = 16 + incl - left
                    more = _read_at_least(stream, b"", need)
                    base += pos
                    if len(more) > need:
                        buf, pos, rest, rest_at = buf[pos:] + more[:need], 0, more, need
                    else:
                        buf, pos = buf[pos:] + more, 0
                        if not more:
                            self._cut(n + 1, base, f"truncated packet data ({left - 16} of "
                                                   f"{incl} bytes)")
                            return
                else:
                    # keep the unparsed tail, read at least a chunk (and at least the
                    # whole record when its header is here)
                    tail = buf[pos:]
                    if rest is not None:
                        tail, rest = tail + rest[rest_at:], None
                        left = len(tail)
                    buf = _read_at_least(stream, tail, left + 1 if incl < 0 else 16 + incl)
                    base += pos
                    pos = 0
                    if len(buf) == left:     # end of stream
                        if left:
                            if left < 16:
                                what = f"truncated packet record header ({left} of 16 bytes)"
                            else:
                                what = (f"truncated packet data ({left - 16} of "
                                        f"{incl} bytes)")
                            self._cut(n + 1, base + pos, what)
                        return
        except Exception as e:           # never a traceback out of a reader
            self._stopped(e, n + 1, base + pos)
        finally:
            self.bytes_read = base + pos

    # ---------------------------------------------------------------- pcapng
    def _pcapng(self):
        buf = self._buf
        self._buf = None
        stream = self._stream
        pos = 0
        base = 0                         # stream offset of buf[0]
        n = 0
        ifaces = []                      # (linktype, divisor, offset, snaplen) per IDB
        nif = 0
        section = 0
        endian = tl = u32 = epb = pb = None  # byte order and unpackers of the section
        try:
            while True:
                end = len(buf)
                packets = []
                add = packets.append
                if tl is not None:
                    # hot loop: well-formed blocks that are wholly in the buffer
                    while pos + 12 <= end:
                        btype, blen = tl(buf, pos)
                        nxt = pos + blen
                        if (btype == PCAPNG_SHB or nxt > end or blen < 12 or blen & 3
                                or blen > MAX_BLOCK or u32(buf, nxt - 4)[0] != blen):
                            break
                        if btype == BT_EPB or btype == BT_PB:
                            if btype == BT_EPB:
                                ifid, hi, lo, incl, orig = epb(buf, pos + 8)
                            else:        # the obsolete Packet Block: the same, with drops
                                ifid, _drops, hi, lo, incl, orig = pb(buf, pos + 8)
                            if ifid >= nif or incl > blen - 32:
                                break
                            blt, bdiv, boff, _ = ifaces[ifid]
                            n += 1
                            ts = ((hi << 32) | lo) / bdiv
                            add((pos + 28, incl, orig, ts + boff if boff else ts, n, blt))
                        elif btype == BT_SPB:
                            if not nif or blen < 16:
                                break
                            blt, bdiv, boff, snap = ifaces[0]
                            orig = tl(buf, pos + 8)[0]
                            incl = min(orig, blen - 16)
                            if snap and incl > snap:
                                incl = snap
                            n += 1
                            add((pos + 12, incl, orig, 0.0, n, blt))
                        elif btype == BT_IDB:
                            if blen < 20:
                                break
                            ifaces.append(self._idb(buf, pos, blen, endian))
                            nif += 1
                        elif btype in FRAME_ONLY_BLOCKS:
                            n += 1       # a frame for Wireshark, no packet for us
                        pos = nxt
                if packets:
                    yield buf, packets
                # slow path: find out what stopped the hot loop
                need = pos + 12
                if need <= end:
                    btype = struct.unpack_from("<I", buf, pos)[0]
                    new = None
                    if btype == PCAPNG_SHB:
                        bom = buf[pos + 8:pos + 12]
                        if bom == b"\x4d\x3c\x2b\x1a":
                            new = "<"
                        elif bom == b"\x1a\x2b\x3c\x4d":
                            new = ">"
                        else:
                            self._cut(n + 1, base + pos,
                                      "corrupt section header block (byte-order magic "
                                      f"{bom.hex(' ')})")
                            return
                        blen = struct.unpack_from(new + "I", buf, pos + 4)[0]
                    else:
                        btype, blen = tl(buf, pos)
                    why = self._bad_block(btype, blen)
                    if why:
                        self._cut(n + 1, base + pos, why)
                        return
                    need = pos + blen
                    if need <= end:      # the whole block is here
                        trailer = struct.unpack_from((new or endian) + "I", buf,
                                                     need - 4)[0]
                        if trailer != blen:
                            self._cut(n + 1, base + pos,
                                      f"corrupt block (type 0x{btype:08x}): length "
                                      f"{blen} at its start, {trailer} at its end")
                            return
                        if new:          # a new section: new byte order, no interfaces
                            endian = new
                            tl = struct.Struct(endian + "II").unpack_from
                            u32 = struct.Struct(endian + "I").unpack_from
                            epb = struct.Struct(endian + "IIIII").unpack_from
                            pb = struct.Struct(endian + "HHIIII").unpack_from
                            ifaces = []
                            nif = 0
                            section += 1
                            pos = need
                            continue
                        # a packet block the hot loop refused: no such interface
                        n += 1
                        if btype == BT_EPB:
                            ifid, incl = epb(buf, pos + 8)[0], epb(buf, pos + 8)[3]
                        elif btype == BT_PB:
                            ifid, incl = pb(buf, pos + 8)[0], pb(buf, pos + 8)[4]
                        else:            # SPB
                            ifid, incl = 0, 0
                        if ifid >= nif:
                            self._error(f"frame {n} (byte offset {base + pos}): packet "
                                        f"of interface {ifid}, but section {section} "
                                        f"describes {nif} interface(s); skipped")
                            pos = need
                            continue
                        self._cut(n, base + pos,
                                  f"packet length {incl} does not fit in its block of "
                                  f"{blen} bytes (corrupt block)")
                        return
                # refill: keep the unparsed tail, read until `need` bytes are there
                self.bytes_read = base + pos
                buf = buf[pos:]
                base += pos
                need -= pos
                pos = 0
                got = len(buf)
                buf = _read_at_least(stream, buf, max(need, got + 1))
                if len(buf) == got:      # end of stream
                    if got:
                        size = need if need > 12 else "at least 12"
                        self._cut(n + 1, base, f"truncated block ({got} of {size} bytes)")
                    return
        except Exception as e:           # never a traceback out of a reader
            self._stopped(e, n + 1, base + pos)
        finally:
            self.bytes_read = base + pos

    @staticmethod
    def _bad_block(btype, blen):
        """Why a block length cannot be right (None when it can)."""
        if blen & 3 or blen < 12 or blen > MAX_BLOCK:
            return f"corrupt block length {blen} (block type 0x{btype:08x})"
        least = {PCAPNG_SHB: 28, BT_EPB: 32, BT_PB: 32, BT_SPB: 16, BT_IDB: 20}
        if blen < least.get(btype, 12):
            return f"corrupt block length {blen} (too short for block type 0x{btype:08x})"
        return None

    def _idb(self, buf, pos, blen, endian):
        """(linktype, timestamp divisor, timestamp offset, snaplen) of an IDB."""
        lt, _res, snap = struct.unpack_from(endian + "HHI", buf, pos + 8)
        div = 1000000
        tsoff = 0
        p = pos + 16
        stop = pos + blen - 4
        opt = struct.Struct(endian + "HH").unpack_from
        while p + 4 <= stop:
            code, olen = opt(buf, p)
            if code == 0:
                break
            v = p + 4
            if v + olen > stop:
                break                    # option runs past the block: ignore the rest
            if code == 9 and olen >= 1:  # if_tsresol: power of 10, or of 2 (high bit)
                r = buf[v]
                div = (1 << (r & 0x7F)) if r & 0x80 else 10 ** r
            elif code == 14 and olen >= 8:   # if_tsoffset, seconds
                tsoff = struct.unpack_from(endian + "q", buf, v)[0]
            p = v + ((olen + 3) & ~3)
        self._check_linktype(lt)
        return lt, div, tsoff, snap


# ------------------------------------------------------------------------- opening

def open_capture(path):
    """Open a pcap or pcapng capture, plain or gzip-compressed; '-' is standard input.
    Raises CaptureError when the input cannot be read as a capture at all."""
    name = "<stdin>" if path == "-" else path
    size = None
    if path == "-":
        fobj = getattr(sys.stdin, "buffer", None)
        if fobj is None:
            raise CaptureError(f"{name}: standard input is not available")
        raw = _RawSource(fobj, pipe=True)
    else:
        try:
            fobj = open(path, "rb", buffering=0)
        except OSError as e:
            raise CaptureError(f"{name}: cannot open: {e.strerror or e}") from None
        try:
            st = os.fstat(fobj.fileno())
            if stat.S_ISREG(st.st_mode):
                size = st.st_size
            raw = _RawSource(fobj, pipe=size is None)
        except OSError as e:
            fobj.close()
            raise CaptureError(f"{name}: cannot open: {e.strerror or e}") from None

    def fail(msg):
        if path != "-":
            fobj.close()
        raise CaptureError(f"{name}: {msg}")

    try:
        head = _read_at_least(raw, b"", 4)
        stream = raw
        if head[:2] == GZIP_MAGIC:
            stream = _GzipSource(raw, head)
            head = b""
        head = _read_at_least(stream, head, 28)
    except _Cut as e:
        fail(f"{e} before the capture header")
    except OSError as e:
        fail(f"cannot read: {e.strerror or e}")
    except Exception as e:
        fail(f"cannot read: {type(e).__name__}: {e}")
    compressed = " (gzip-compressed)" if stream is not raw else ""
    if not head:
        fail(f"empty file{compressed}: not a pcap or pcapng capture")
    magic = head[:4]
    if magic in PCAP_MAGICS:
        if len(head) < 24:
            fail(f"pcap file header cut short ({len(head)} of 24 bytes)")
        fmt = "pcap"
    elif magic == b"\x0a\x0d\x0d\x0a":
        if len(head) < 28:
            fail(f"pcapng section header block cut short ({len(head)} of 28 bytes)")
        bom = head[8:12]
        if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            fail(f"pcapng section header with a bad byte-order magic ({bom.hex(' ')})")
        fmt = "pcapng"
    else:
        shown = head[:4].hex(" ")
        what = "not a pcap or pcapng capture"
        if magic in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"):
            what = "a modified (Kuznetzov) pcap, which is not supported"
        fail(f"{what}{compressed} (starts with {shown})")
    cap = Capture(path, fobj, stream, raw, head, fmt, size)
    return cap

