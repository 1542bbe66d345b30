"""Hostile captures, made on demand: the reproducers of the scale tests.

Each ``make_*`` writes one capture (pcap, Ethernet, IPv4) and returns its path;
``calm=True`` writes the same amount of traffic without the hostile part, to set
the CPU time of the hostile one against. ``python tests/hostile.py DIR`` writes
them all into DIR (for timing them from outside: ``time pcap-tls-split analyze
DIR/resync-storm.pcap``).

- ``resync-storm``: after a lost record header, a server stream whose bytes look
  like a TLS record header every 5 bytes (none of which is confirmed by another
  header after its body), 600 segments of 1,500 bytes.
- ``holes``: one connection whose server sends every other segment only (a hole
  before each one: 100,000 holes), or its segments in reverse order.
- ``damaged-gzip``: a sample, gzip-compressed, with a bad CRC, a zeroed trailer,
  a bit flipped late in the stream, or cut short.
- ``keylog``: a key log of 300,000 lines, among them the lines of a sample's
  connections.
"""

import gzip
import os
import struct
import sys
from pathlib import Path

if __name__ == "__main__":           # run as a script: the package is beside tests/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcap_tls_split.frame import ACK, FIN, PSH, SYN

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIENT, SERVER = (b"\x0a\x00\x00\x02", 50000), (b"\x0a\x00\x00\x01", 443)


def tcp_frame(src, dst, seq, ack, flags, payload=b""):
    """Ethernet, IPv4, TCP (checksums left 0: nobody checks them here)."""
    tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0,
                     src[0], dst[0])
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload


def write_pcap(path, frames):
    """``frames``: (time, bytes)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for time, data in frames:
            sec = int(time)
            f.write(struct.pack("<IIII", sec, round((time - sec) * 1e6), len(data), len(data)))
            f.write(data)
    return str(path)


class Connection:
    """Frames of one connection: SYN, SYN-ACK, ACK, then what the script sends."""

    def __init__(self, client_isn=1000, server_isn=900000):
        self.frames = []
        self.time = 1000.0
        self.cseq, self.sseq = client_isn, server_isn
        self.add(CLIENT, SERVER, self.cseq, 0, SYN)
        self.add(SERVER, CLIENT, self.sseq, self.cseq + 1, SYN | ACK)
        self.cseq += 1
        self.sseq += 1
        self.add(CLIENT, SERVER, self.cseq, self.sseq, ACK)

    def add(self, src, dst, seq, ack, flags, payload=b""):
        self.time += 0.0001
        self.frames.append((self.time, tcp_frame(src, dst, seq, ack, flags, payload)))

    def client_sends(self, payload):
        self.add(CLIENT, SERVER, self.cseq, self.sseq, ACK | PSH, payload)
        self.cseq += len(payload)

    def server_segment(self, offset, payload, flags=ACK | PSH):
        """A server segment at ``offset`` bytes into its stream (sent or not, in any order)."""
        self.add(SERVER, CLIENT, self.sseq + offset, self.cseq, flags, payload)

    def write(self, path):
        return write_pcap(path, self.frames)


def record(content_type, body, version=0x0303):
    return bytes([content_type, version >> 8, version & 0xFF]) + len(body).to_bytes(2, "big") + body


def hello(msg_type, body):
    return record(22, bytes([msg_type]) + len(body).to_bytes(3, "big") + body,
                  version=0x0301 if msg_type == 1 else 0x0303)


CLIENT_HELLO = hello(1, b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00")
SERVER_HELLO = hello(2, b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00")

# Looks like a record header every 5 bytes: application_data, TLS 1.2, length
# 0x3ff0; 5 + 0x3ff0 is not a multiple of 5, so the bytes after each body are no
# header and no candidate is ever confirmed.
STORM_UNIT = bytes.fromhex("17 0303 3ff0")
CALM_UNIT = bytes.fromhex("00 0303 3ff0")


def make_resync_storm(path, segments=600, size=1500, calm=False):
    """A TLS connection whose server loses a record header (a segment never
    captured, acknowledged by the client), then sends ``segments`` segments of
    bytes that look like a header every 5 bytes (``calm``: the same bytes with
    the content type zeroed: nothing looks like a header)."""
    conn = Connection()
    conn.client_sends(CLIENT_HELLO)
    conn.server_segment(0, SERVER_HELLO)
    at = len(SERVER_HELLO)
    lost = record(23, b"\x00" * 200)
    at += len(lost)                  # never captured: the header of what follows is lost
    unit = CALM_UNIT if calm else STORM_UNIT
    data = unit * (segments * size // len(unit) + 1)
    for i in range(segments):
        conn.server_segment(at + i * size, data[i * size:(i + 1) * size])
        conn.add(CLIENT, SERVER, conn.cseq, conn.sseq + at + (i + 1) * size, ACK)
    end = at + segments * size
    conn.server_segment(end, b"", ACK | FIN)
    conn.add(CLIENT, SERVER, conn.cseq, conn.sseq + end + 1, ACK | FIN)
    return conn.write(path)


def make_holes(path, holes=100000, size=100, calm=False, reverse=False):
    """One connection whose server sends records of 16,000 bytes in segments of
    ``size`` bytes, of which the capture holds every other one (a hole before
    each: ``holes`` holes), or (``reverse``) ``holes`` segments, last first.
    ``calm``: ``holes`` segments, in order, no hole. The client acknowledges
    nothing after the handshake, so every hole stays open."""
    conn = Connection()
    conn.client_sends(CLIENT_HELLO)
    conn.server_segment(0, SERVER_HELLO)
    at = len(SERVER_HELLO)
    if calm:
        offsets = [at + i * size for i in range(holes)]
    elif reverse:
        offsets = [at + i * size for i in reversed(range(holes))]
    else:
        offsets = [at + 2 * i * size + size for i in range(holes)]
    stream = record(23, b"\xa5" * 16000) * (2 * holes * size // 16005 + 1)
    for offset in offsets:
        conn.server_segment(offset, stream[offset - at:offset - at + size], ACK)
    return conn.write(path)


def gzip_variants(src, out_dir):
    """A capture gzip-compressed, then damaged four ways: {name: path}."""
    data = Path(src).read_bytes()
    packed = gzip.compress(data, mtime=0)
    crc = bytearray(packed)
    crc[-8] ^= 0xFF                  # the trailer's CRC-32
    zero = bytearray(packed)
    zero[-8:] = bytes(8)             # CRC-32 and ISIZE zeroed
    flip = bytearray(packed)
    flip[len(flip) * 9 // 10] ^= 0x10    # a bit late in the deflate data
    variants = {"intact": packed, "bad-crc": crc, "zero-trailer": zero, "late-flip": flip,
                "cut": packed[:len(packed) * 9 // 10]}
    paths = {}
    for name, content in variants.items():
        path = Path(out_dir) / f"damaged-gzip-{name}.pcap.gz"
        path.write_bytes(bytes(content))
        paths[name] = str(path)
    return paths


def make_keylog(path, lines=300000, keep=None):
    """A key log of ``lines`` made-up lines, and the lines of ``keep`` (a key log
    file) among them in the middle."""
    kept = Path(keep).read_text().splitlines() if keep else []
    with open(path, "w") as f:
        for i in range(lines):
            if i == lines // 2:
                f.write("".join(line + "\n" for line in kept))
            random = i.to_bytes(32, "big").hex()
            f.write(f"CLIENT_RANDOM {random} {'ab' * 48}\n")
    return str(path)


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = [make_resync_storm(out / "resync-storm.pcap"),
            make_resync_storm(out / "resync-calm.pcap", calm=True),
            make_holes(out / "holes.pcap"),
            make_holes(out / "holes-reverse.pcap", reverse=True),
            make_holes(out / "holes-calm.pcap", calm=True)]
    made += gzip_variants(SAMPLES / "field-bug-70-tries.pcap", out).values()
    made.append(make_keylog(out / "big.keys", keep=SAMPLES / "field-bug-tls12.keys"))
    for path in made:
        print(f"{os.path.getsize(path):>12,}  {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "hostile-captures")
