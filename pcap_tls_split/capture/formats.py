"""The capture formats, declared once: magics, header layouts, block types, link types.

Everything that needs one of these numbers imports it from here (the readers,
``frame``'s link-layer table, the directory walk that sniffs magics).
"""

import struct

# -- pcap (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-03.html) ----------

# magic -> (struct byte order, timestamp fraction units per second)
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000000),       # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000000),
    b"\x4d\x3c\xb2\xa1": ("<", 1000000000),    # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1000000000),
}
# Alexey Kuznetzov's modified pcap: recognised only to say it is not supported
PCAP_MODIFIED_MAGICS = (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34")
PCAP_HEADER_LENGTH = 24          # magic, version, thiszone, sigfigs, snaplen, network
PCAP_SNAPLEN_AT = 16             # snaplen, then network (link type), 4 bytes each
PCAP_RECORD_LENGTH = 16          # ts_sec, ts_frac, incl_len, orig_len
PCAP_LINKTYPE_MASK = 0x03FFFFFF  # the upper bits of "network" carry FCS information


def pcap_record_header(endian):
    """The unpacker of a pcap record header: (ts_sec, ts_frac, incl_len, orig_len)."""
    return struct.Struct(endian + "IIII").unpack_from


# -- pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html) ------

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
BT_SHB = 0x0A0D0D0A              # section header block
BT_IDB = 0x00000001              # interface description block
BT_PB = 0x00000002               # obsolete packet block
BT_SPB = 0x00000003              # simple packet block
BT_EPB = 0x00000006              # enhanced packet block
BT_DSB = 0x0000000A              # decryption secrets block
# Blocks that are no packets but that Wireshark (4.0) numbers as frames all the same:
# systemd journal export, sysdig events, custom blocks (checked with tshark 4.0.17)
FRAME_ONLY_BLOCKS = frozenset((0x00000009, 0x00000204, 0x00000216, 0x00000221,
                               0x00000BAD, 0x40000BAD))
# byte-order magic of a section header, as it reads in each byte order
BYTE_ORDER_MAGICS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
SHB_LENGTH = 28                  # the smallest section header block
# the smallest length a block of each type can have
MIN_BLOCK_LENGTH = {BT_SHB: 28, BT_EPB: 32, BT_PB: 32, BT_SPB: 16, BT_IDB: 20}
BLOCK_HEADER = 12                # type, length ... length again at the end
EPB_DATA_AT = 28                 # packet data of an EPB (and PB): after 20 bytes of fields
SPB_DATA_AT = 12
# interface description block options
OPT_END, OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 0, 9, 14
# packet block options
OPT_COMMENT = 1
# decryption secrets block: TLS key log (NSS SSLKEYLOGFILE format)
DSB_TLS_KEY_LOG = 0x544C534B

# -- gzip (RFC 1952) ------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b"

# The first bytes of every capture we read, compressed or not
CAPTURE_MAGICS = tuple(PCAP_MAGICS) + (PCAPNG_MAGIC, GZIP_MAGIC)

# -- link types (https://www.tcpdump.org/linktypes.html) -------------------------------

LINKTYPE_NULL = 0                # BSD loopback, address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_BSD = 12            # raw IP (DLT_RAW on most BSDs)
LINKTYPE_RAW_OPENBSD = 14        # raw IP (DLT_RAW on OpenBSD)
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51          # PPPoE
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104            # Cisco HDLC
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108              # OpenBSD loopback, address family in network order
LINKTYPE_LINUX_SLL = 113         # Linux cooked v1 (tcpdump -i any)
LINKTYPE_PFLOG = 117
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_PPI = 192
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276        # Linux cooked v2

LINKTYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 9: "PPP", 12: "RAW", 14: "RAW", 50: "PPP_HDLC",
    51: "PPP_ETHER", 101: "RAW", 104: "C_HDLC", 105: "IEEE802_11", 108: "LOOP",
    113: "LINUX_SLL", 117: "PFLOG", 119: "IEEE802_11_PRISM", 127: "IEEE802_11_RADIOTAP",
    147: "USER0", 163: "IEEE802_11_AVS", 192: "PPI", 195: "IEEE802_15_4",
    220: "USB_LINUX_MMAPPED", 228: "IPV4", 229: "IPV6", 249: "NETLINK",
    276: "LINUX_SLL2",
}
