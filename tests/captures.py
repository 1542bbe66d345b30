"""Write captures in the other forms a capturer produces, for the re-capture tests.

The same frames written as pcapng, as nanosecond pcap, big-endian, gzip-compressed,
or with their Ethernet header swapped for a Linux cooked (SLL/SLL2) one.
"""

import gzip
import struct

from pcap_tls_split.capture import open_capture

ETHERNET, LINUX_SLL, LINUX_SLL2 = 1, 113, 276


def read_frames(path):
    """(time, linktype, data, orig_len) of every frame."""
    with open_capture(str(path)) as capture:
        return [(t, lt, bytes(d), n) for _, t, lt, d, n in capture.frames()]


def write_pcap(path, frames, nanosecond=False, big_endian=False, snaplen=262144):
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    linktype = frames[0][1] if frames else ETHERNET
    with open(path, "wb") as f:
        f.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        for time, _, data, orig_len in frames:
            sec = int(time)
            frac = round((time - sec) * (1e9 if nanosecond else 1e6))
            f.write(struct.pack(order + "IIII", sec, frac, len(data), orig_len))
            f.write(data)


def _block(block_type, body):
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def write_pcapng(path, frames, tsresol=9):
    """pcapng, one interface per link type, ``if_tsresol`` 10^-tsresol."""
    interfaces = {}
    blocks = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for time, linktype, data, orig_len in frames:
        if linktype not in interfaces:
            interfaces[linktype] = len(interfaces)
            option = struct.pack("<HHB", 9, 1, tsresol) + b"\0" * 3 + struct.pack("<HH", 0, 0)
            blocks.append(_block(1, struct.pack("<HHI", linktype, 0, 262144) + option))
        ticks = round(time * 10 ** tsresol)
        body = struct.pack("<IIIII", interfaces[linktype], ticks >> 32, ticks & 0xFFFFFFFF,
                           len(data), orig_len) + data
        blocks.append(_block(6, body))
    with open(path, "wb") as f:
        f.write(b"".join(blocks))


def gzip_file(src, dst):
    with open(src, "rb") as f, gzip.open(dst, "wb") as g:
        g.write(f.read())


def as_linux_cooked(frames, version=1):
    """Replace each Ethernet header by a Linux cooked v1 or v2 header."""
    out = []
    for time, linktype, data, orig_len in frames:
        assert linktype == ETHERNET
        ethertype = data[12:14]
        payload = data[14:]
        if version == 1:
            # packet type 0 (to us), ARPHRD_ETHER, address length 6, address + 2 pad, protocol
            header = struct.pack(">HHH", 0, 1, 6) + data[6:12] + b"\0\0" + ethertype
            out.append((time, LINUX_SLL, header + payload, orig_len + 2))
        else:
            # protocol, reserved, interface index, ARPHRD_ETHER, packet type, address length, address
            header = ethertype + b"\0\0" + struct.pack(">IHBB", 1, 1, 0, 6) + data[6:12] + b"\0\0"
            out.append((time, LINUX_SLL2, header + payload, orig_len + 6))
    return out
