"""capture.py: pcap/pcapng/gzip/stdin reading, damage handling, and the corpus.

The small capture writers at the top are also used by test_frame.py.
"""
import functools
import gzip
import io
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import CORPUS, ROOT, corpus_files
from pcap_tls_split.capture import streams as capture_streams
from pcap_tls_split.capture import CaptureError, open_capture

# ----------------------------------------------------------------------------- writers

# One TCP packet: Ethernet dst, src, type 0x0800 | IPv4 10.0.0.1 -> 10.0.0.2, TCP 1234 -> 443
PKT = bytes.fromhex(
    "ffffffffffff" "000000000001" "0800"                          # Ethernet
    "45000028" "00010000" "40060000" "0a000001" "0a000002"        # IPv4, 40 bytes
    "04d201bb" "00000001" "00000000" "50022000" "00000000")       # TCP SYN


def pcap_bytes(records, linktype=1, endian="<", nano=False, snaplen=262144, network=None):
    """records: (seconds, fraction (us or ns), data[, orig_len])."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen,
                       linktype if network is None else network)]
    for rec in records:
        sec, frac, data = rec[:3]
        orig = rec[3] if len(rec) > 3 else len(data)
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), orig) + data)
    return b"".join(out)


def block(btype, body, e="<"):
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def shb(e="<"):
    return block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)


def option(code, value, e="<"):
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def idb(linktype, snaplen=0, tsresol=None, tsoffset=None, e="<"):
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), e)
    if tsoffset is not None:
        opts += option(14, struct.pack(e + "q", tsoffset), e)
    if opts:
        opts += struct.pack(e + "HH", 0, 0)
    return block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts, e)


def epb(ifid, ts, data, orig=None, e="<"):
    return block(6, struct.pack(e + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                len(data) if orig is None else orig) + data, e)


def spb(data, orig=None, e="<"):
    return block(3, struct.pack(e + "I", len(data) if orig is None else orig) + data, e)


def pb(ifid, ts, data, e="<"):
    return block(2, struct.pack(e + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF,
                                len(data), len(data)) + data, e)


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


def read_all(path):
    with open_capture(path) as cap:
        frames = list(cap.frames())
    return cap, frames


# ----------------------------------------------------------------------------- pcap

@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, endian, nano):
    frac = 123456789 if nano else 123456
    # (the third: a time after 2038 and an original length with every byte distinct and
    # the top bit set, in the header's byte order)
    data = pcap_bytes([(1700000000, frac, PKT), (1700000001, 0, PKT[:40], 60),
                       (0xF1020304, 1, PKT[:40], 0x81020304)],
                      endian=endian, nano=nano)
    cap, frames = read_all(write(tmp_path, "a.pcap", data))
    assert cap.format == "pcap" and cap.errors == []
    assert [f[0] for f in frames] == [1, 2, 3]
    assert frames[2][1] == 0xF1020304 + (1e-9 if nano else 1e-6)
    assert frames[2][2:] == (1, PKT[:40], 0x81020304)
    assert frames[0][1] == pytest.approx(1700000000.123456789 if nano else 1700000000.123456,
                                         abs=1e-6)
    assert frames[0][2:] == (1, PKT, len(PKT))
    assert frames[1][2:] == (1, PKT[:40], 60)
    assert cap.size == len(data) and cap.bytes_read == len(data)


def test_pcap_linktype_fcs_bits_masked(tmp_path):
    # bits 28 (F) and 26-27 (FCS length) of the link type field carry FCS information
    data = pcap_bytes([(1, 0, PKT)], network=(1 << 28) | (2 << 26) | 1)
    _, frames = read_all(write(tmp_path, "f.pcap", data))
    assert frames[0][2] == 1


def test_caplen_above_snaplen_but_sane_is_read(tmp_path):
    data = pcap_bytes([(1, 0, PKT * 4)], snaplen=64)
    cap, frames = read_all(write(tmp_path, "s.pcap", data))
    assert len(frames) == 1 and cap.errors == []


def test_lying_caplen_stops_with_error(tmp_path):
    good = pcap_bytes([(1, 0, PKT)])
    bad = good + struct.pack("<IIII", 2, 0, 0x7FFFFFF0, 60) + b"x" * 100
    cap, frames = read_all(write(tmp_path, "l.pcap", bad))
    assert len(frames) == 1
    assert len(cap.errors) == 1
    assert "l.pcap" in cap.errors[0] and "frame 2" in cap.errors[0]
    assert "record length 2147483632" in cap.errors[0]
    # just above the limit, with the bytes present: refused too
    bad = good + struct.pack("<IIII", 2, 0, 300000, 300000) + b"x" * 300000
    cap, frames = read_all(write(tmp_path, "l2.pcap", bad))
    assert len(frames) == 1 and "record length 300000" in cap.errors[0]


def test_big_snaplen_allows_big_records(tmp_path):
    big = b"\0" * 300000
    data = pcap_bytes([(1, 0, big)], snaplen=1 << 20)
    cap, frames = read_all(write(tmp_path, "b.pcap", data))
    assert cap.errors == [] and frames[0][3] == big


@pytest.mark.parametrize("chunk", [None, 40, 100])
def test_pcap_truncated_at_every_offset(tmp_path, monkeypatch, chunk):
    if chunk:
        monkeypatch.setattr(capture_streams, "CHUNK", chunk)   # cuts between reads too
    recs = [(1, 0, PKT), (2, 0, PKT[:20]), (3, 0, PKT)]
    full = pcap_bytes(recs)
    starts = [24]
    for r in recs:
        starts.append(starts[-1] + 16 + len(r[2]))
    p = tmp_path / "t.pcap"
    for cut in range(len(full) + 1):
        p.write_bytes(full[:cut])
        if cut < 24:
            with pytest.raises(CaptureError) as ei:
                open_capture(str(p))
            assert str(p) in str(ei.value)
            assert ("empty" in str(ei.value)) == (cut == 0)
            continue
        cap, frames = read_all(str(p))
        complete = sum(1 for s in starts[1:] if s <= cut)
        assert [f[0] for f in frames] == list(range(1, complete + 1)), cut
        if cut in starts:
            assert cap.errors == [], cut
        else:
            assert len(cap.errors) == 1, cut
            err = cap.errors[0]
            assert err.startswith(f"{p}: capture cut short at frame {complete + 1} "
                                  f"(byte offset {starts[complete]})"), err
            assert "truncated packet" in err


# ----------------------------------------------------------------------------- pcapng

def multi_pcapng():
    """Two sections (little then big endian), three interfaces, every packet block."""
    raw = PKT[14:]
    return (shb()
            + idb(1, tsresol=3, tsoffset=100)                 # ms, +100 s
            + idb(101, tsresol=0x8A)                          # 2^-10 s
            + block(4, b"\0\0\0\0")                           # NRB: skipped
            + epb(0, 1700000000_123, PKT)                     # frame 1
            + epb(1, 1700000000 * 1024 + 512, raw)            # frame 2
            + block(0x0A, struct.pack("<II", 0x544C534B, 4) + b"abcd")  # DSB: skipped
            + block(0x0BAD, struct.pack("<I", 32473) + b"xx")  # custom: frame 3, no packet
            + block(5, struct.pack("<III", 0, 0, 0))          # ISB: skipped
            + spb(PKT)                                        # frame 4 (interface 0)
            + shb(">")
            + idb(113, snaplen=30, e=">")                     # SLL, us (default), snap 30
            + idb(1, tsresol=9, e=">")                        # ns
            + epb(1, 1700000005_000000001, PKT, e=">")        # frame 5
            + spb(b"\0" * 30, orig=40, e=">")                 # frame 6: cut to snaplen 30
            + pb(0, 1700000006_000000, b"\1" * 20, e=">")     # frame 7 (obsolete PB)
            + block(9, b"__REALTIME_TIMESTAMP=1700000000500000\nMESSAGE=hello world\n",
                    ">"))                                     # frame 8: journal entry


def test_pcapng_sections_interfaces_blocks(tmp_path):
    cap, frames = read_all(write(tmp_path, "m.pcapng", multi_pcapng()))
    assert cap.format == "pcapng" and cap.errors == []
    got = [(n, lt, data, orig) for n, _ts, lt, data, orig in frames]
    assert got == [
        (1, 1, PKT, len(PKT)),
        (2, 101, PKT[14:], len(PKT) - 14),
        (4, 1, PKT, len(PKT)),
        (5, 1, PKT, len(PKT)),
        (6, 113, b"\0" * 30, 40),
        (7, 113, b"\1" * 20, 20),
    ]
    ts = [f[1] for f in frames]
    assert ts[0] == pytest.approx(1700000100.123, abs=1e-6)
    assert ts[1] == pytest.approx(1700000000.5, abs=1e-9)
    assert ts[2] == 0.0                  # SPB: no timestamp
    assert ts[3] == pytest.approx(1700000005.000000001, abs=1e-6)
    assert ts[5] == pytest.approx(1700000006.0, abs=1e-6)


def test_pcapng_numbering_and_times_match_tshark(tmp_path, tshark):
    path = write(tmp_path, "m.pcapng", multi_pcapng())
    out = subprocess.run([tshark, "-n", "-r", path, "-T", "fields", "-e", "frame.number",
                          "-e", "frame.time_epoch", "-e", "frame.cap_len"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 8                # journal and custom blocks are frames there too
    _, frames = read_all(path)
    theirs = {int(n): (float(t) if t else 0.0, int(c)) for n, t, c in rows}
    for n, t, _lt, data, _orig in frames:
        assert theirs[n][1] == len(data)
        assert theirs[n][0] == pytest.approx(t, abs=1e-6)


@pytest.mark.parametrize("e", ["<", ">"])
def test_pcapng_64_bit_timestamps_and_lengths_in_either_byte_order(tmp_path, e):
    """An EPB's fields (read by pcap.u32 where compiled) in both byte orders: a
    timestamp whose two 32-bit halves have their top bits set, in microseconds,
    nanoseconds and 2^-30 s, an original length with the top bit set; the times are
    the 64-bit count over the resolution, as Python divides them."""
    stamps = [(0x80000001 << 32) | 0xF0000002, (0x00000001 << 32) | 0x80000000, 0xFFFFFFFF]
    data = shb(e)
    for resol in (None, 9, 0x80 | 30):
        data += idb(1, tsresol=resol, e=e)
    for k, ts in enumerate(stamps):
        data += epb(k, ts, PKT, orig=0x80000000 + k, e=e)
    cap, frames = read_all(write(tmp_path, "t.pcapng", data))
    assert cap.errors == []
    divisors = (10 ** 6, 10 ** 9, 1 << 30)
    assert [f[1] for f in frames] == [ts / div for ts, div in zip(stamps, divisors)]
    assert [f[4] for f in frames] == [0x80000000, 0x80000001, 0x80000002]
    assert all(f[3] == PKT for f in frames)


def test_u32_is_int_from_bytes():
    """pcap.u32, which the walks and the packet loop read 32-bit fields with where
    compiled, is int.from_bytes in either byte order, the top bit set or not."""
    import random
    from pcap_tls_split.capture import pcap
    rng = random.Random(7)
    blob = bytes([0xFF, 0x80, 0x00, 0x7F, 0x01, 0xFE]) + bytes(rng.randrange(256) for _ in range(200))
    for at in range(len(blob) - 3):
        word = blob[at:at + 4]
        assert pcap.u32(blob, at, True) == int.from_bytes(word, "little"), at
        assert pcap.u32(blob, at, False) == int.from_bytes(word, "big"), at


def test_pcapng_unknown_interface_is_skipped(tmp_path):
    data = shb() + idb(1) + epb(0, 1, PKT) + epb(7, 2, PKT) + epb(0, 3, PKT)
    cap, frames = read_all(write(tmp_path, "u.pcapng", data))
    assert [f[0] for f in frames] == [1, 3]
    assert len(cap.errors) == 1 and "interface 7" in cap.errors[0]
    assert "frame 2" in cap.errors[0]


@pytest.mark.parametrize("what,patch", [
    ("not a multiple of 4", lambda b: b[:4] + struct.pack("<I", 61) + b[8:]),
    ("too small", lambda b: b[:4] + struct.pack("<I", 8) + b[8:]),
    ("huge", lambda b: b[:4] + struct.pack("<I", 0x7FFFFFF0) + b[8:]),
    ("too short for an EPB", lambda b: b[:4] + struct.pack("<I", 16) + b[8:]),
    ("trailer mismatch", lambda b: b[:-4] + struct.pack("<I", len(b) + 4)),
    ("caplen past the block", lambda b: b[:20] + struct.pack("<I", 200) + b[24:]),
])
def test_pcapng_corrupt_block_stops_with_error(tmp_path, what, patch):
    bad = patch(epb(0, 2, PKT))
    data = shb() + idb(1) + epb(0, 1, PKT) + bad + epb(0, 3, PKT)
    cap, frames = read_all(write(tmp_path, "c.pcapng", data))
    assert [f[0] for f in frames] == [1], what
    assert len(cap.errors) == 1, what
    assert cap.errors[0].startswith(f"{tmp_path / 'c.pcapng'}: capture cut short at frame 2")


def test_an_error_inside_the_walk_is_told_where_it_happened(tmp_path, monkeypatch):
    # (no real bytes make the walks raise: a stand-in failure, at frame 4 of one read,
    # in the pcap record header's unpacker, which the pure-Python walk calls; compiled,
    # the walk reads the header itself: the pcapng part below stands in for both)
    from pcap_tls_split import _version
    from pcap_tls_split.capture import pcap, reader
    unpacker = pcap.pcap_record_header

    def failing(endian):
        unpack, calls = unpacker(endian), []

        def unpack_but_the_fourth(buf, pos):
            calls.append(pos)
            if len(calls) == 4:
                raise MemoryError("simulated")
            return unpack(buf, pos)
        return unpack_but_the_fourth
    if "pcap_tls_split.capture.pcap" not in _version.compiled():
        monkeypatch.setattr(pcap, "pcap_record_header", failing)
        cap, frames = read_all(write(tmp_path, "m.pcap", pcap_bytes([(i, 0, PKT) for i in range(6)])))
        at = 24 + 3 * (16 + len(PKT))
        assert [f[0] for f in frames] == [1, 2, 3]      # the frames before it are analysed
        assert cap.errors == [f"{tmp_path / 'm.pcap'}: error reading frame 4 (byte offset {at}): "
                              f"MemoryError: simulated"] and cap.bytes_read == at

    checked = reader.Capture.check_linktype

    def check(self, lt):
        if lt == 147:
            raise MemoryError("simulated")
        return checked(self, lt)
    monkeypatch.setattr(reader.Capture, "check_linktype", check)
    head = shb() + idb(1) + epb(0, 1, PKT) + epb(0, 2, PKT) + epb(0, 3, PKT)
    cap, frames = read_all(write(tmp_path, "m.pcapng", head + idb(147) + epb(1, 4, PKT)))
    assert [f[0] for f in frames] == [1, 2, 3]
    assert cap.errors == [f"{tmp_path / 'm.pcapng'}: error reading frame 4 (byte offset "
                          f"{len(head)}): MemoryError: simulated"] and cap.bytes_read == len(head)


def test_pcapng_bad_byte_order_magic(tmp_path):
    data = bytearray(shb() + idb(1) + epb(0, 1, PKT))
    with pytest.raises(CaptureError, match="byte-order magic"):
        open_capture(write(tmp_path, "bom.pcapng", bytes(data[:8]) + b"\0\0\0\0" + bytes(data[12:])))
    second = shb()
    second = second[:8] + b"\1\2\3\4" + second[12:]
    cap, frames = read_all(write(tmp_path, "bom2.pcapng", bytes(data) + second))
    assert len(frames) == 1 and "byte-order magic" in cap.errors[0]


def test_pcapng_truncated_at_every_offset(tmp_path):
    blocks = [shb(), idb(1), epb(0, 1, PKT), block(5, b"\0" * 12), spb(PKT[:30]),
              epb(0, 3, PKT)]
    full = b"".join(blocks)
    ends, pos = [], 0
    for b in blocks:
        pos += len(b)
        ends.append(pos)
    packet_ends = [ends[2], ends[4], ends[5]]
    frame_no = [1, 2, 3]
    p = tmp_path / "t.pcapng"
    for cut in range(len(full) + 1):
        p.write_bytes(full[:cut])
        if cut < 28:
            with pytest.raises(CaptureError):
                open_capture(str(p))
            continue
        cap, frames = read_all(str(p))
        complete = sum(1 for e in packet_ends if e <= cut)
        assert [f[0] for f in frames] == frame_no[:complete], cut
        if cut in ends:
            assert cap.errors == [], cut
        else:
            assert len(cap.errors) == 1, cut
            assert "capture cut short at frame" in cap.errors[0], cap.errors


@pytest.mark.parametrize("chunk", [1, 5, 64, 100])
def test_tiny_reads_give_the_same_frames(tmp_path, monkeypatch, chunk):
    """Records and blocks straddling read boundaries at every position."""
    files = {"a.pcap": pcap_bytes([(i, i, PKT[:i * 7 % 54]) for i in range(12)]),
             "b.pcapng": multi_pcapng()}
    files["c.pcapng.gz"] = gzip.compress(files["b.pcapng"])
    want = {}
    for name, content in files.items():
        want[name] = read_all(write(tmp_path, name, content))[1]
    monkeypatch.setattr(capture_streams, "CHUNK", chunk)
    for name in files:
        cap, frames = read_all(str(tmp_path / name))
        assert frames == want[name] and cap.errors == [], name


def test_progress_counters(tmp_path):
    data = pcap_bytes([(i, 0, PKT) for i in range(3000)])    # a few chunks
    with open_capture(write(tmp_path, "p.pcap", data)) as cap:
        seen = [cap.bytes_read for _ in cap.frames()]
    assert seen == sorted(seen) and cap.bytes_read == cap.size == len(data)
    assert cap.raw_bytes_read == len(data)


def test_shb_with_options(tmp_path):
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + option(4, b"pcap-tls-split test") \
        + struct.pack("<HH", 0, 0)
    data = block(0x0A0D0D0A, body) + idb(1) + epb(0, 5, PKT)
    cap, frames = read_all(write(tmp_path, "o.pcapng", data))
    assert cap.errors == [] and [f[3] for f in frames] == [PKT]


# ----------------------------------------------------------------------------- gzip

def test_gzip_detected_by_magic_not_name(tmp_path):
    plain = pcap_bytes([(1, 0, PKT), (2, 0, PKT)])
    for name in ("x.pcap", "x.gz", "x"):
        cap, frames = read_all(write(tmp_path, name, gzip.compress(plain)))
        assert cap.compressed and len(frames) == 2 and cap.errors == []
        assert cap.bytes_read == len(plain)                  # decompressed bytes
        assert cap.raw_bytes_read == cap.size                 # compressed file bytes
    cap, frames = read_all(write(tmp_path, "y.gz", plain))    # .gz name, not compressed
    assert not cap.compressed and len(frames) == 2


def test_gzip_multi_member_and_pcapng(tmp_path):
    data = multi_pcapng()
    cut = len(data) // 2
    two = gzip.compress(data[:cut]) + gzip.compress(data[cut:])
    cap, frames = read_all(write(tmp_path, "m.pcapng.gz", two))
    assert cap.format == "pcapng" and cap.errors == [] and len(frames) == 6


def test_gzip_truncated_at_every_offset(tmp_path):
    plain = pcap_bytes([(i, 0, PKT) for i in range(5)])
    _, ref = read_all(write(tmp_path, "ref.pcap", plain))
    full = gzip.compress(plain)
    p = tmp_path / "t.pcap.gz"
    for cut in range(len(full) + 1):
        p.write_bytes(full[:cut])
        try:
            cap, frames = read_all(str(p))
        except CaptureError as e:
            assert str(p) in str(e)
            continue
        assert frames == ref[:len(frames)], cut
        # every frame whose bytes could be decompressed came out
        avail = len(zlib.decompressobj(31).decompress(full[:cut]))
        assert len(frames) == sum(1 for i in range(5) if 24 + (i + 1) * (16 + len(PKT))
                                  <= avail), cut
        if cut == len(full):
            assert cap.errors == [] and frames == ref
        else:
            assert len(cap.errors) == 1 and "cut short" in cap.errors[0], (cut, cap.errors)


def test_gzip_corrupt_data(tmp_path):
    # incompressible packets, so that the damage sits a few chunks into the stream
    # (the same ones every run: a flipped byte that lands in a pcap record header
    # shows as a corrupt header before zlib's check fails; this one lands in data)
    rng = random.Random(376)
    rnd = [rng.randbytes(1400) for _ in range(50)]
    plain = pcap_bytes([(i, 0, rnd[i % 50]) for i in range(2500)])
    full = bytearray(gzip.compress(plain, compresslevel=1))
    full[len(full) * 2 // 3] ^= 0xFF
    cap, frames = read_all(write(tmp_path, "c.gz", bytes(full)))
    assert 0 < len(frames) <= 2500
    assert len(cap.errors) == 1 and "corrupt compressed (gzip) data" in cap.errors[0]


def _salvage(compressed):
    """What zlib can decode of a gzip stream before its damage, one byte at a time."""
    d, out = zlib.decompressobj(31), []
    for i in range(len(compressed)):
        try:
            out.append(d.decompress(compressed[i:i + 1]))
        except zlib.error:
            break
        if d.eof:
            break
    return b"".join(out)


def _readable_frames(tmp_path, plain):
    """The frames of an uncompressed capture's bytes (wholly there ones)."""
    return read_all(write(tmp_path, "readable.pcap", plain))[1]


@pytest.mark.parametrize("where, damage", [
    ("crc", lambda b: b[:-8] + bytes([b[-8] ^ 0xFF]) + b[-7:]),
    ("length", lambda b: b[:-4] + bytes([b[-4] ^ 0x01]) + b[-3:]),
    ("zero-trailer", lambda b: b[:-8] + bytes(8)),
])
def test_gzip_trailer_damage_loses_no_packet(tmp_path, where, damage):
    """A bad CRC, length or zeroed trailer: every packet is read, the damage is said."""
    plain = pcap_bytes([(i, 0, PKT + bytes([i % 256]) * 50) for i in range(300)])
    cap, frames = read_all(write(tmp_path, f"{where}.pcap.gz", damage(gzip.compress(plain))))
    assert frames == _readable_frames(tmp_path, plain) and len(frames) == 300
    assert cap.format == "pcap" and len(cap.errors) == 1
    field = "length" if where == "length" else "CRC-32"
    assert f"corrupt compressed (gzip) data: the {field} in its trailer" in cap.errors[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.floats(0.0, 1.0), bits=st.integers(1, 255), level=st.sampled_from([1, 6, 9]))
def test_gzip_damage_anywhere_loses_only_what_follows_it(tmp_path, at, bits, level):
    """Bytes damaged anywhere: exactly the packets zlib can decode before the damage
    come out (as tshark reads them), then the damage is said once."""
    plain = pcap_bytes([(i, 0, PKT + bytes([i % 7]) * (i % 300)) for i in range(400)])
    full = bytearray(gzip.compress(plain, compresslevel=level, mtime=0))
    i = 10 + int(at * (len(full) - 11))
    full[i] ^= bits
    path = write(tmp_path, "d.pcap.gz", bytes(full))
    readable = _salvage(bytes(full))
    try:
        cap, frames = read_all(path)
    except CaptureError as e:
        assert len(readable) < 24 and str(e).startswith(path)
        return
    if readable.startswith(plain[:24]):       # the damage did not change the header
        expected = _readable_frames(tmp_path, readable)
        assert frames == expected
    assert len(cap.errors) <= 1


def test_gzip_damage_in_a_big_stream_keeps_everything_before_it(tmp_path):
    """Megabytes in, deflate data made undecodable in the middle of a chunk read
    (zlib gives nothing of a call that fails): what precedes the damage is kept."""
    plain = pcap_bytes([(i, 0, PKT + bytes([i % 251]) * (i % 1000)) for i in range(8000)])
    packed = gzip.compress(plain, compresslevel=6, mtime=0)
    for at in range(len(packed) // 2, len(packed), 7):
        full = packed[:at] + b"\xff" * 4 + packed[at + 4:]
        try:
            zlib.decompress(full, 31)
        except zlib.error as e:
            if "incorrect data check" not in str(e):   # an error zlib sees mid-stream
                break
    readable = _salvage(full)
    expected = _readable_frames(tmp_path, readable)
    assert len(plain) // 4 < len(readable) < len(plain) - 100000 and len(expected) > 2000
    cap, frames = read_all(write(tmp_path, "m.pcap.gz", full))
    assert frames == expected
    # (what zlib decoded just before it saw the damage may already be wrong: the
    # walk may stop there first, on a record header that makes no sense)
    assert len(cap.errors) == 1


def test_read_at_least_hands_out_bytes_read_before_a_cut():
    class Damaged:
        def __init__(self):
            self.reads = [b"abc", capture_streams.Cut("damaged")]

        def read(self, n):
            got = self.reads.pop(0) if self.reads else capture_streams.Cut("damaged")
            if isinstance(got, Exception):
                raise got
            return got

    stream = Damaged()
    assert capture_streams.read_at_least(stream, b"", 10) == b"abc"
    with pytest.raises(capture_streams.Cut):
        capture_streams.read_at_least(stream, b"abc", 10)     # nothing more came


def test_gzip_damaged_before_the_header_is_said(tmp_path):
    plain = pcap_bytes([(0, 0, PKT)])
    full = bytearray(gzip.compress(plain, compresslevel=0))   # stored: bytes as they are
    full[10 + 5 + 12] ^= 0xFF                                  # inside the pcap header
    full = bytes(full[:10 + 5 + 20])                           # and cut there
    with pytest.raises(CaptureError, match="gzip.*before the capture header|cut short"):
        open_capture(write(tmp_path, "h.pcap.gz", full))


# ----------------------------------------------------------------------------- bad input

def test_not_a_capture(tmp_path):
    p = write(tmp_path, "page.pcap", b"<html><body>hello</body></html>")
    with pytest.raises(CaptureError) as ei:
        open_capture(p)
    assert str(ei.value) == f"{p}: not a pcap or pcapng capture (starts with 3c 68 74 6d)"
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture"):
        open_capture(write(tmp_path, "page.gz", gzip.compress(b"<html>" * 10)))


def test_empty_and_tiny_files(tmp_path):
    with pytest.raises(CaptureError, match="empty"):
        open_capture(write(tmp_path, "e.pcap", b""))
    with pytest.raises(CaptureError, match="empty"):
        open_capture(write(tmp_path, "e.gz", gzip.compress(b"")))
    with pytest.raises(CaptureError, match="cut short"):
        open_capture(write(tmp_path, "h.pcap", pcap_bytes([])[:10]))
    cap, frames = read_all(write(tmp_path, "n.pcap", pcap_bytes([])))
    assert frames == [] and cap.errors == []


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(str(tmp_path / "nope.pcap"))
    with pytest.raises(CaptureError) as ei:
        open_capture(str(tmp_path))
    assert "\n" not in str(ei.value)


def test_unsupported_linktype_reported_once(tmp_path):
    data = pcap_bytes([(1, 0, b"abc"), (2, 0, b"def")], linktype=147)
    path = write(tmp_path, "u.pcap", data)
    with open_capture(path, linktypes={1, 113}) as cap:
        frames = list(cap.frames())
    assert len(frames) == 2
    assert cap.errors == [f"{tmp_path / 'u.pcap'}: link type 147 (USER0) is not supported: "
                          "its frames are skipped"]
    # the reader itself knows no decoder: without the caller's set it says nothing
    assert read_all(path)[0].errors == []


def test_frames_can_be_iterated_again_for_a_file(tmp_path):
    with open_capture(write(tmp_path, "r.pcap", pcap_bytes([(1, 0, PKT)]))) as cap:
        assert len(list(cap.frames())) == 1
        assert len(list(cap.frames())) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=st.binary(max_size=300), ng=st.booleans())
def test_random_bytes_after_a_header_never_raise(tail, ng):
    head = shb() + idb(1) if ng else pcap_bytes([])
    with tempfile.NamedTemporaryFile(suffix=".cap") as f:
        f.write(head + tail)
        f.flush()
        with open_capture(f.name) as cap:
            frames = list(cap.frames())
    assert all(isinstance(e, str) and "\n" not in e for e in cap.errors)
    assert [fr[0] for fr in frames] == sorted(fr[0] for fr in frames)


# ----------------------------------------------------------------------------- stdin

def test_stdin_monkeypatched(monkeypatch):
    data = gzip.compress(pcap_bytes([(1, 0, PKT), (2, 0, PKT)]))
    fake = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr(sys, "stdin", fake)
    with open_capture("-") as cap:
        frames = list(cap.frames())
    assert cap.path == "-" and cap.size is None and len(frames) == 2 and cap.errors == []
    assert list(cap.frames()) == []      # stdin cannot be read twice


def test_stdin_subprocess_plain_and_gzip():
    script = ("from pcap_tls_split.capture import open_capture\n"
              "c = open_capture('-')\n"
              "print(c.format, sum(1 for _ in c.frames()), c.errors)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for data in (pcap_bytes([(1, 0, PKT)] * 3), gzip.compress(multi_pcapng())):
        out = subprocess.run([sys.executable, "-c", script], input=data, env=env,
                             capture_output=True, check=True).stdout.decode()
        assert out.split()[1] in ("3", "6") and out.strip().endswith("[]"), out
    cut = pcap_bytes([(1, 0, PKT)] * 3)[:-5]
    out = subprocess.run([sys.executable, "-c", script], input=cut, env=env,
                         capture_output=True, check=True).stdout.decode()
    assert out.startswith("pcap 2 ['<stdin>: capture cut short at frame 3"), out


def test_stdin_streams_from_a_pipe(monkeypatch):
    """The first frame comes out while the writer still holds the rest back."""
    r, w = os.pipe()
    first_seen = threading.Event()
    data = pcap_bytes([(1, 0, PKT), (2, 0, PKT)])
    split = 24 + 16 + len(PKT)

    def writer():
        os.write(w, data[:split])
        first_seen.wait(10)
        os.write(w, data[split:])
        os.close(w)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    rf = os.fdopen(r, "rb")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(rf))
    result = []

    def reader():
        with open_capture("-") as cap:
            it = cap.frames()
            result.append(next(it)[0])
            first_seen.set()
            result.extend(f[0] for f in it)

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    rt.join(20)
    first_seen.set()
    t.join(5)
    rf.close()
    assert result == [1, 2]


# ----------------------------------------------------------------------------- corpus

MARKER = b"pcap-tls-split corpus marker"
TSHARK_FIELDS = ["frame.number", "frame.encap_type", "frame.protocols", "ip.src", "ip.dst",
                 "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.stream"]


def _tshark_rows(tshark, path):
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=l"]
                         + [a for f in TSHARK_FIELDS for a in ("-e", f)],
                         capture_output=True, text=True, check=False).stdout
    return [line.split("\t") for line in out.splitlines()]


@functools.lru_cache(maxsize=1)
def tshark_corpus(tshark):
    """{file: [(frame_number, protocols, src, dst, sport, dport, numbered), ...]} as
    tshark sees every corpus file (src/dst: the IP layer nearest TCP; numbered: the
    TCP header got a tcp.stream number).

    One tshark run over all files concatenated by mergecap, with a marker frame (link
    type USER0) between files, takes about a second instead of half a minute for 150
    runs; without mergecap, or if the markers do not come out right, one run per file.
    In the merged run tshark's TCP conversations can span files, which changes what it
    dissects *above* TCP (tls, ssh, http ...) in a few frames; frame numbers, whether
    there is a tcp layer, the ICMP layers before it, and the addresses and ports are
    the same as in per-file runs (checked for this corpus), and are all the tests use."""
    files = corpus_files()
    table = None
    mergecap = shutil.which("mergecap")
    if mergecap:
        with tempfile.TemporaryDirectory() as d:
            marker = Path(d) / "marker.pcap"
            marker.write_bytes(pcap_bytes([(0, 0, MARKER)], linktype=147))
            args = [str(marker)]
            for f in files:
                args += [str(f), str(marker)]
            merged = Path(d) / "all.pcapng"
            done = subprocess.run([mergecap, "-a", "-F", "pcapng", "-w", str(merged)] + args,
                                  capture_output=True)
            if done.returncode == 0:
                rows = _tshark_rows(tshark, merged)
                parts, cur = [], None
                for row in rows:
                    if row[1] == "45" and row[2].startswith("user_dlt"):
                        if cur is not None:
                            parts.append(cur)
                        cur = []
                    elif cur is not None:
                        cur.append(row)
                if len(parts) == len(files):
                    table = {f: [[str(i + 1)] + r[1:] for i, r in enumerate(p)]
                             for f, p in zip(files, parts)}
    if table is None:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
            table = dict(zip(files, ex.map(lambda f: _tshark_rows(tshark, f), files)))
    result = {}
    for f, rows in table.items():
        result[f] = [(int(n), prot) + innermost(prot, s4, d4, s6, d6) + (sp, dp, bool(stream))
                     for n, _encap, prot, s4, d4, s6, d6, sp, dp, stream in
                     (row + [""] * (10 - len(row)) for row in rows)]
    return result


def innermost(protocols, s4, d4, s6, d6):
    """The addresses of the IP layer nearest the TCP (or last) layer of a tshark row
    whose ip.* and ipv6.* fields hold their last occurrences."""
    layers = protocols.split(":")
    if "tcp" in layers:
        layers = layers[:layers.index("tcp")]
    for layer in reversed(layers):
        if layer == "ip":
            return s4, d4
        if layer == "ipv6":
            return s6, d6
    return s4 or s6, d4 or d6


def corpus_id(p):
    return str(p.relative_to(CORPUS)) if CORPUS in p.parents else str(p)


def test_corpus_frame_counts_match_tshark(corpus, tshark):
    ref = tshark_corpus(tshark)
    bad = []
    for f in corpus_files():
        cap, frames = read_all(str(f))
        if cap.errors:
            bad.append((corpus_id(f), cap.errors))
        if len(frames) != len(ref[f]) or [fr[0] for fr in frames] != list(
                range(1, len(frames) + 1)):
            bad.append((corpus_id(f), len(frames), len(ref[f])))
        if cap.size is not None and not cap.compressed:
            assert cap.bytes_read == cap.size
    assert bad == []
    assert len(corpus_files()) > 100
