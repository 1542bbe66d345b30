"""The pcap record walk: each read of the stream with where its packets lie."""

import struct

try:
    import cython
    COMPILED = cython.compiled   # (True where this module is compiled, else False)
except ImportError:              # no Cython here: this module is pure Python
    COMPILED = False

from .formats import (PCAP_HEADER_LENGTH, PCAP_LINKTYPE_MASK, PCAP_MAGICS, PCAP_RECORD_LENGTH,
                      PCAP_SNAPLEN_AT, pcap_record_header)
from .streams import read_at_least

MAX_CAPLEN = 256 * 1024         # a bigger record length is a lie unless the snaplen says so
MAX_CAPLEN_HARD = 64 << 20      # ... and never more than this, whatever the snaplen says
HEADER = PCAP_RECORD_LENGTH


def u32(buf, at, little):
    """The 32-bit unsigned integer at ``buf[at:at + 4]`` (bytes), little-endian or
    big-endian: ``int.from_bytes``. Where compiled, a C function that the record
    walks and the packet loop call (its first byte shifted once it is in a 64-bit
    variable), in place of their struct calls."""
    if little:
        value = buf[at + 3]
        return value << 24 | buf[at + 2] << 16 | buf[at + 1] << 8 | buf[at]
    value = buf[at]
    return value << 24 | buf[at + 1] << 16 | buf[at + 2] << 8 | buf[at + 3]


def records(buf, pos, n, limit, div, lt, unpack, little, packets):
    """The whole records of ``buf`` from ``pos`` on, each appended to ``packets``
    as (start, captured length, orig_len, timestamp, frame number, linktype), ``n``
    the frame number before them: returns (where they stop, the last frame number,
    the captured length of the record they stop at: -1 when its header is not
    all there; more than ``limit``, a corrupt header; else its data is not; and
    the exception that stopped them there, if one did). A record header is read
    by ``unpack`` (``pcap_record_header``'s), or where compiled by ``u32`` in the
    same byte order (``little``): no struct call, tuple or int objects a record."""
    end = len(buf)
    header = HEADER                  # (a C integer where compiled: so is every sum below)
    add = packets.append
    compiled = COMPILED              # (a local: read once a record)
    if compiled and type(buf) is not bytes:
        buf = bytes(buf)             # (a reader's bytearray or view: read as bytes)
    try:
        while pos + header <= end:
            if compiled:
                sec = u32(buf, pos, little)
                frac = u32(buf, pos + 4, little)
                incl = u32(buf, pos + 8, little)
                orig = u32(buf, pos + 12, little)
            else:
                sec, frac, incl, orig = unpack(buf, pos)
            nxt = pos + header + incl
            if nxt > end or incl > limit:
                return pos, n, incl, None
            n += 1
            add((pos + header, incl, orig, sec + frac / div, n, lt))
            pos = nxt
    except Exception as exc:         # (told where it happened, not at the read's start)
        return pos, n, -1, exc
    return pos, n, -1, None


def batches(capture, buf, stream):
    """Yield (buf, packets) for ``Capture.batches``: ``buf`` starts with the file
    header. Damage stops the walk and is told to ``capture`` (``cut``,
    ``stopped``); it never raises."""
    endian, div = PCAP_MAGICS[buf[:4]]
    snaplen, network = struct.unpack_from(endian + "II", buf, PCAP_SNAPLEN_AT)
    lt = network & PCAP_LINKTYPE_MASK
    capture.check_linktype(lt)
    limit = max(MAX_CAPLEN, min(snaplen, MAX_CAPLEN_HARD))
    unpack = pcap_record_header(endian)
    little = endian == "<"
    pos = PCAP_HEADER_LENGTH
    base = 0                         # stream offset of buf[0]
    n = 0
    rest = None                      # a read's bytes after the record taken from it
    rest_at = 0                      # where in `rest` the next read's bytes begin
    try:
        while True:
            end = len(buf)
            packets = []
            pos, n, incl, failed = records(buf, pos, n, limit, div, lt, unpack, little, packets)
            if packets:
                yield buf, packets
            if failed is not None:
                raise failed         # (told to capture below, where it happened)
            if incl > limit:
                capture.cut(n + 1, base + pos,
                            f"record length {incl} is larger than the maximum of "
                            f"{limit} (corrupt record header)")
                return
            capture.bytes_read = base + pos
            left = end - pos
            if rest is not None and not left:
                # the record completed across two reads is done: on with the
                # second read, not copied
                base += end
                buf, pos, rest = rest, rest_at, None
                base -= pos
            elif rest is None and left >= HEADER:
                # a record cut by the end of the read: complete it, alone, from
                # the next read (copying that one record, not the whole read)
                need = HEADER + incl - left
                more = read_at_least(stream, b"", need)
                base += pos
                if len(more) > need:
                    buf, pos, rest, rest_at = buf[pos:] + more[:need], 0, more, need
                else:
                    buf, pos = buf[pos:] + more, 0
                    if not more:
                        capture.cut(n + 1, base, f"truncated packet data ({left - HEADER} of "
                                                 f"{incl} bytes)")
                        return
            else:
                # keep the unparsed tail, read at least a chunk (and at least the
                # whole record when its header is here)
                tail = buf[pos:]
                if rest is not None:
                    tail, rest = tail + rest[rest_at:], None
                    left = len(tail)
                buf = read_at_least(stream, tail, left + 1 if incl < 0 else HEADER + incl)
                base += pos
                pos = 0
                if len(buf) == left:     # end of stream
                    if left:
                        if left < HEADER:
                            what = f"truncated packet record header ({left} of 16 bytes)"
                        else:
                            what = (f"truncated packet data ({left - HEADER} of "
                                    f"{incl} bytes)")
                        capture.cut(n + 1, base + pos, what)
                    return
    except Exception as e:           # never a traceback out of a reader
        capture.stopped(e, n + 1, base + pos)
    finally:
        capture.bytes_read = base + pos
