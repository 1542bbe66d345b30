"""Flood captures for the connection table's bounds: ``syn`` (SYNs from as many
sources, over 10 s), ``synrst`` (SYN then RST pairs, over 1,000 s), ``data``
(one 100-byte segment from as many sources, mid-stream, over 10 s) and ``hello``
(a SYN, then a real ClientHello, made by CPython's ssl, from as many sources, over 10 s).

    python bench/flood.py syn 1000000 /tmp/syn-flood.pcap
    python bench/flood.py synrst 500000 /tmp/synrst.pcap
    /usr/bin/time -v pcap-tls-split analyze /tmp/syn-flood.pcap   # time, peak memory
"""

import os
import ssl
import struct
import sys

ETH = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
SERVER = bytes((192, 0, 2, 1))


def frame(src, dst, sport, dport, seq, ack, flags, ident, payload=b""):
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), ident & 0xFFFF, 0, 64, 6, 0, src, dst)
    return ETH + ip + struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0) + payload


def client_hello():
    """One real ClientHello record, as CPython's ssl (OpenSSL) sends it."""
    obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                 server_hostname="flood.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def main(kind, count, path):
    if kind not in ("syn", "synrst", "data", "hello"):
        raise SystemExit(f"flood: {kind!r}: syn, synrst, data or hello")
    hello = client_hello() if kind == "hello" else b""
    span = 1000.0 if kind == "synrst" else 10.0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n in range(count):
            src = bytes((10, (n >> 16) & 255, (n >> 8) & 255, n & 255))
            t = n * span / count
            if kind == "data":
                packets = [frame(src, SERVER, 1024 + n % 60000, 443, n, 1, 0x18, n, bytes(100))]
            elif kind == "hello":
                packets = [frame(src, SERVER, 1024 + n % 60000, 443, n, 0, 0x02, n),
                           frame(src, SERVER, 1024 + n % 60000, 443, n + 1, 1, 0x18, n, hello)]
            else:
                packets = [frame(src, SERVER, 1024 + n % 60000, 443, n, 0, 0x02, n)]
            if kind == "synrst":
                packets.append(frame(SERVER, src, 443, 1024 + n % 60000, 0, n + 1, 0x14, n))
            for data in packets:
                f.write(struct.pack("<IIII", 1_700_000_000 + int(t), int(t % 1 * 1e6), len(data), len(data)))
                f.write(data)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(f"usage: {os.path.basename(sys.argv[0])} syn|synrst|data|hello COUNT OUT")
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
