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


# -- frames built field by field (for the connection table's numbering rules) ---------------

def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def ip4(src, dst, proto, payload):
    """An IPv4 packet (addresses as dotted strings)."""
    import ipaddress
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + payload


def tcp(sport, dport, seq, ack, flags, payload=b""):
    """A TCP header (20 bytes, no options) and its payload (checksum left 0)."""
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload


def ethernet(packet, ethertype=0x0800):
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + packet


def icmp_unreachable(quoted):
    """An ICMP destination unreachable (port) quoting ``quoted``."""
    return struct.pack("!BBHI", 3, 3, 0, 0) + quoted


def write_packets(path, packets, start=1000.0, step=0.01):
    """Ethernet frames of ``packets`` (IP packets, or (time, packet) pairs) into a pcap."""
    frames, time = [], start
    for item in packets:
        if isinstance(item, tuple):
            time, item = item
        else:
            time += step
        data = ethernet(item)
        frames.append((time, ETHERNET, data, len(data)))
    write_pcap(path, frames)
