"""The pcapng block walk: each read of the stream with where its packets lie.

Several sections of either byte order, several interfaces with their own link
type, ``if_tsresol`` and ``if_tsoffset``; EPB, SPB and the obsolete Packet Block.
"""

import struct

try:
    import cython
    COMPILED = cython.compiled   # (True where this module is compiled, else False)
except ImportError:              # no Cython here: this module is pure Python
    COMPILED = False

from . import pcap
from .formats import (BLOCK_HEADER, BT_EPB, BT_IDB, BT_PB, BT_SHB, BT_SPB, BYTE_ORDER_MAGICS,
                      EPB_DATA_AT, FRAME_ONLY_BLOCKS, MIN_BLOCK_LENGTH, OPT_END, OPT_IF_TSOFFSET,
                      OPT_IF_TSRESOL, SPB_DATA_AT)
from .streams import read_at_least

MAX_BLOCK = 16 << 20            # block length limit (as Wireshark's)


def batches(capture, buf, stream):
    """Yield (buf, packets) for ``Capture.batches``: ``buf`` starts with the first
    section header. Damage stops the walk and is told to ``capture``; it never raises."""
    pos = 0
    base = 0                         # stream offset of buf[0]
    n = 0
    ifaces = []                      # (linktype, divisor, offset, snaplen) per IDB
    section = 0
    endian = tl = u32 = epb = pb = None  # byte order and unpackers of the section
    try:
        while True:
            end = len(buf)
            packets = []
            failed = None
            if tl is not None:
                pos, n, failed = blocks(capture, buf, pos, n, ifaces, endian, tl, u32, epb, pb,
                                        packets)
            if packets:
                yield buf, packets
            if failed is not None:
                raise failed         # (told to capture below, where it happened)
            # slow path: find out what stopped the hot loop
            need = pos + BLOCK_HEADER
            if need <= end:
                btype = struct.unpack_from("<I", buf, pos)[0]
                new = None
                if btype == BT_SHB:
                    bom = buf[pos + 8:pos + 12]
                    new = BYTE_ORDER_MAGICS.get(bom)
                    if new is None:
                        capture.cut(n + 1, base + pos,
                                    "corrupt section header block (byte-order magic "
                                    f"{bom.hex(' ')})")
                        return
                    blen = struct.unpack_from(new + "I", buf, pos + 4)[0]
                else:
                    btype, blen = tl(buf, pos)
                why = bad_block(btype, blen)
                if why:
                    capture.cut(n + 1, base + pos, why)
                    return
                need = pos + blen
                if need <= end:      # the whole block is here
                    trailer = struct.unpack_from((new or endian) + "I", buf,
                                                 need - 4)[0]
                    if trailer != blen:
                        capture.cut(n + 1, base + pos,
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
                    if ifid >= len(ifaces):
                        capture.error(f"frame {n} (byte offset {base + pos}): packet "
                                      f"of interface {ifid}, but section {section} "
                                      f"describes {len(ifaces)} interface(s); skipped")
                        pos = need
                        continue
                    capture.cut(n, base + pos,
                                f"packet length {incl} does not fit in its block of "
                                f"{blen} bytes (corrupt block)")
                    return
            # refill: keep the unparsed tail, read until `need` bytes are there
            capture.bytes_read = base + pos
            buf = buf[pos:]
            base += pos
            need -= pos
            pos = 0
            got = len(buf)
            buf = read_at_least(stream, buf, max(need, got + 1))
            if len(buf) == got:      # end of stream
                if got:
                    size = need if need > BLOCK_HEADER else "at least 12"
                    capture.cut(n + 1, base, f"truncated block ({got} of {size} bytes)")
                return
    except Exception as e:           # never a traceback out of a reader
        capture.stopped(e, n + 1, base + pos)
    finally:
        capture.bytes_read = base + pos


def blocks(capture, buf, pos, n, ifaces, endian, tl, u32, epb, pb, packets):
    """The hot loop: the well-formed blocks of ``buf`` from ``pos`` on that are
    wholly in it, up to a section header; each packet appended to ``packets`` as
    (start, captured length, orig_len, timestamp, frame number, linktype), each
    interface description to ``ifaces``. ``n`` is the frame number before them;
    returns (where they stop, the last frame number, the exception that stopped
    them there, if one did). Where compiled, a block's type and lengths and an
    EPB's fields are read by ``pcap.u32`` in the section's byte order, not by the
    struct calls (``tl``, ``u32``, ``epb``): no tuple or int objects a packet."""
    end = len(buf)
    nif = len(ifaces)
    add = packets.append
    # (C integers where compiled: so is every sum and comparison of the hot path)
    header, shb, epb_type, pb_type, max_block = BLOCK_HEADER, BT_SHB, BT_EPB, BT_PB, MAX_BLOCK
    epb_data_at = EPB_DATA_AT
    little = endian == "<"
    compiled = COMPILED              # (a local: read once a block or more)
    if compiled and type(buf) is not bytes:
        buf = bytes(buf)             # (a reader's bytearray or view: read as bytes)
    try:
        while pos + header <= end:
            if compiled:
                btype = pcap.u32(buf, pos, little)
                blen = pcap.u32(buf, pos + 4, little)
            else:
                btype, blen = tl(buf, pos)
            nxt = pos + blen
            if (btype == shb or nxt > end or blen < header or blen & 3 or blen > max_block
                    or (pcap.u32(buf, nxt - 4, little) if compiled else u32(buf, nxt - 4)[0]) != blen):
                break
            if btype == epb_type or btype == pb_type:
                if btype == epb_type and compiled and blen >= epb_data_at + 4:
                    # (its fields all inside the block, so inside buf: a shorter one is
                    # read by the struct call below, which fails as it always has)
                    ifid = pcap.u32(buf, pos + 8, little)
                    hi = pcap.u32(buf, pos + 12, little)
                    lo = pcap.u32(buf, pos + 16, little)
                    incl = pcap.u32(buf, pos + 20, little)
                    orig = pcap.u32(buf, pos + 24, little)
                elif btype == epb_type:
                    ifid, hi, lo, incl, orig = epb(buf, pos + 8)
                else:        # the obsolete Packet Block: the same, with drops
                    ifid, _drops, hi, lo, incl, orig = pb(buf, pos + 8)
                if ifid >= nif or incl > blen - 32:
                    break
                blt, bdiv, boff, _ = ifaces[ifid]
                n += 1
                ts = ((hi << 32) | lo) / bdiv
                add((pos + epb_data_at, incl, orig, ts + boff if boff else ts, n, blt))
            elif btype == BT_SPB:
                if not nif or blen < 16:
                    break
                blt, bdiv, boff, snap = ifaces[0]
                orig = tl(buf, pos + 8)[0]
                incl = min(orig, blen - 16)
                if snap and incl > snap:
                    incl = snap
                n += 1
                add((pos + SPB_DATA_AT, incl, orig, 0.0, n, blt))
            elif btype == BT_IDB:
                if blen < 20:
                    break
                ifaces.append(_idb(capture, buf, pos, blen, endian))
                nif += 1
            elif btype in FRAME_ONLY_BLOCKS:
                n += 1       # a frame for Wireshark, no packet for us
            pos = nxt
    except Exception as exc:         # (told where it happened, not at the read's start)
        return pos, n, exc
    return pos, n, None


def bad_block(btype, blen):
    """Why a block length cannot be right (None when it can)."""
    if blen & 3 or blen < BLOCK_HEADER or blen > MAX_BLOCK:
        return f"corrupt block length {blen} (block type 0x{btype:08x})"
    if blen < MIN_BLOCK_LENGTH.get(btype, BLOCK_HEADER):
        return f"corrupt block length {blen} (too short for block type 0x{btype:08x})"
    return None


def _idb(capture, buf, pos, blen, endian):
    """(linktype, timestamp divisor, timestamp offset, snaplen) of an IDB."""
    lt, _res, snap = struct.unpack_from(endian + "HHI", buf, pos + 8)
    div = 1000000
    tsoff = 0
    p = pos + 16
    stop = pos + blen - 4
    opt = struct.Struct(endian + "HH").unpack_from
    while p + 4 <= stop:
        code, olen = opt(buf, p)
        if code == OPT_END:
            break
        v = p + 4
        if v + olen > stop:
            break                    # option runs past the block: ignore the rest
        if code == OPT_IF_TSRESOL and olen >= 1:  # power of 10, or of 2 (high bit)
            r = buf[v]
            div = (1 << (r & 0x7F)) if r & 0x80 else 10 ** r
        elif code == OPT_IF_TSOFFSET and olen >= 8:   # seconds
            tsoff = struct.unpack_from(endian + "q", buf, v)[0]
        p = v + ((olen + 3) & ~3)
    capture.check_linktype(lt)
    return lt, div, tsoff, snap
