"""Frame -> TCP segment: link layer, IP and tunnel decoding (pure functions, no I/O).

``decode(linktype, data, orig_len)`` turns one captured frame into the
``Segment`` it carries, or ``None`` when the frame holds no TCP segment we can
place (UDP, ARP, ICMP, non-first or non-last IP fragments, truncated headers,
garbage, unsupported link types).  It never raises.

The common link layers (Ethernet with 802.1Q/QinQ/MPLS/PPPoE, Linux cooked v1/v2,
raw IP, BSD loopback, PPP, Cisco HDLC, PFLOG, PPI) and every IP layer (IPv4 with
options, IPv6 with extension headers, AH) are decoded by hand with
``struct.unpack_from`` and byte indexing on the captured ``bytes``: no per-packet
objects besides the returned segment and its slices.  802.11 and radiotap go
through dpkt (see ``_dpkt_fallback``).

Tunnels are followed down to the innermost TCP segment, as Wireshark does when it
numbers TCP streams: IP-in-IP (4, 41), GRE (47; IPv4/IPv6/MPLS payloads,
transparent Ethernet bridging 0x6558, ERSPAN types I/II/III, PPTP's enhanced GRE),
VXLAN (UDP 4789), VXLAN-GPE (UDP 4790), GENEVE (UDP 6081), GTP-U (UDP 2152) and
CAPWAP data (UDP 5247, 802.3 or 802.11 frames).

An ICMP or ICMPv6 error quoting at least 16 bytes of a TCP header gives a
``Segment`` with ``ICMP_QUOTE`` in its flags: not a packet of the connection,
but Wireshark gives it (and so the connection it names) a ``tcp.stream``
number, which the connection table follows.
"""
import socket
import struct
from typing import NamedTuple

from .capture.formats import (LINKTYPE_C_HDLC, LINKTYPE_ETHERNET, LINKTYPE_IEEE802_11,
                              LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_IPV4, LINKTYPE_IPV6,
                              LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL,
                              LINKTYPE_PFLOG, LINKTYPE_PPI, LINKTYPE_PPP, LINKTYPE_PPP_ETHER,
                              LINKTYPE_PPP_HDLC, LINKTYPE_RAW, LINKTYPE_RAW_BSD, LINKTYPE_RAW_OPENBSD)

__all__ = ["Segment", "decode", "format_endpoint", "SUPPORTED_LINKTYPES", "TCP_FLAGS",
           "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "ICMP_QUOTE"]

# TCP flags (RFC 9293 section 3.1: byte 13 of the TCP header)
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128
TCP_FLAGS = {"FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH, "ACK": ACK,
             "URG": URG, "ECE": ECE, "CWR": CWR}
# Not a TCP flag: the segment is a TCP header quoted in an ICMP error
ICMP_QUOTE = 0x100
# ICMP error types that quote the datagram (RFC 792, RFC 4443): destination
# unreachable, source quench, redirect, time exceeded, parameter problem;
# ICMPv6 destination unreachable, packet too big, time exceeded, parameter problem
ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))
ICMP6_ERRORS = frozenset((1, 2, 3, 4))
QUOTED_TCP_LEAST = 16       # Wireshark numbers a quoted TCP header from 16 bytes on


class Segment(NamedTuple):
    """One TCP segment as a frame carried it (a named tuple: one is made per packet)."""

    src: bytes
    """Source address, packed: 4 bytes (IPv4) or 16 (IPv6)."""
    dst: bytes
    """Destination address, packed."""
    sport: int
    """Source port."""
    dport: int
    """Destination port."""
    seq: int
    """Sequence number (raw, not relative)."""
    ack: int
    """Acknowledgment number (meaningful when ``flags`` has ACK)."""
    flags: int
    """The TCP flags byte (``FIN``, ``SYN``, ``RST``, ``PSH``, ``ACK``...)."""
    window: int
    """The window field, unscaled."""
    payload: bytes
    """The captured TCP payload, trimmed to the IP length (Ethernet padding dropped)."""
    missing: int
    """Payload bytes the IP length announces but the capture does not hold (cut by the snap length)."""


_segment = tuple.__new__        # Segment from a tuple of its fields, the fastest way


_IP4 = struct.Struct(">BBHHHBBH4s4s").unpack_from     # 20-byte IPv4 header
_IP6 = struct.Struct(">IHBB16s16s").unpack_from       # 40-byte IPv6 header
_TCP = struct.Struct(">HHIIBBH").unpack_from           # first 16 bytes of TCP
# From the IPv4 total length to the TCP window, for Ethernet + IPv4 (no options) + TCP
_ETH_IP4_TCP = struct.Struct(">H2xH1xB2x4s4sHHIIBBH").unpack_from
_HH = struct.Struct(">HH").unpack_from
_HHH = struct.Struct(">HHH").unpack_from
_LE_HH = struct.Struct("<HH").unpack_from
_LE_I = struct.Struct("<I").unpack_from
_BE_I = struct.Struct(">I").unpack_from

_MAX_DEPTH = 8          # nested encapsulations followed before giving up

# Ethertypes
ET_IPV4, ET_IPV6, ET_VLAN, ET_QINQ, ET_QINQ_OLD = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100
ET_MPLS, ET_MPLS_MC, ET_PPPOE_SESS, ET_TEB = 0x8847, 0x8848, 0x8864, 0x6558
ET_ERSPAN2, ET_ERSPAN3, ET_PPP = 0x88BE, 0x22EB, 0x880B

# AF_INET6 as written by the BSDs, macOS, Linux and Windows in DLT_NULL / DLT_LOOP
_AF_INET6 = frozenset((10, 23, 24, 28, 30))

_IPV6_EXT = frozenset((0, 43, 60))   # hop-by-hop, routing, destination options
_PW_ETHERTYPES = frozenset((ET_IPV4, ET_IPV6, ET_VLAN, ET_QINQ, ET_QINQ_OLD, ET_MPLS,
                            ET_MPLS_MC, ET_PPPOE_SESS, 0x0806))


# --------------------------------------------------------------------------- TCP / IP

def _tcp(data, p, end, src, dst):
    """TCP header at p; the IP layer says the segment ends at `end` (frame offset).

    The 20 fixed bytes must be captured; options cut by the snap length are not
    needed (Wireshark still shows such a SYN as TCP), and then the payload is empty
    or missing as the lengths say."""
    n = len(data)
    q = p + 20
    if q > n or q > end:
        return None                                   # fixed TCP header truncated
    sport, dport, seq, ack, offx, flags, win = _TCP(data, p)
    ps = p + ((offx >> 4) << 2)
    if ps < q or ps > end:
        return None                                   # bad data offset
    if end <= n:
        return _segment(Segment, (src, dst, sport, dport, seq, ack, flags, win, data[ps:end], 0))
    if ps < n:
        return _segment(Segment, (src, dst, sport, dport, seq, ack, flags, win, data[ps:], end - n))
    return _segment(Segment, (src, dst, sport, dport, seq, ack, flags, win, data[n:n], end - ps))


def _ip4(data, off, limit, depth):
    """IPv4 header at `off`; `limit` is where the bytes on the wire end for this layer."""
    vhl, _tos, tot, _id, frag, _ttl, proto, _sum, src, dst = _IP4(data, off)
    ihl = (vhl & 15) << 2
    if vhl >> 4 != 4 or ihl < 20 or frag & 0x3FFF:
        return None                      # not IPv4, bad header length, or a fragment
    if tot:
        if tot < ihl:
            return None
        end = off + tot
        if end > limit:
            end = limit                  # total length beyond the frame: bogus, trim
    else:
        end = limit                      # 0: TSO/LRO capture on the host, use the frame
    p = off + ihl
    if proto == 6:
        return _tcp(data, p, end, src, dst)
    return _ip_proto(proto, data, p, end, src, dst, depth)


def _ip6(data, off, limit, depth):
    vfl, plen, nh, _hlim, src, dst = _IP6(data, off)
    if vfl >> 28 != 6:
        return None
    p = off + 40
    if plen:
        end = p + plen
        if end > limit:
            end = limit
    else:
        end = limit                      # jumbogram or TSO: use the frame
    while True:
        if nh == 6:
            return _tcp(data, p, end, src, dst)
        if nh in _IPV6_EXT:
            nh, p = data[p], p + ((data[p + 1] + 1) << 3)
        elif nh == 44:                   # fragment header: only a whole datagram
            if ((data[p + 2] << 8) | data[p + 3]) & 0xFFF9:
                return None              # offset != 0 or more fragments
            nh, p = data[p], p + 8
        else:
            break
        if p > end:
            return None
    return _ip_proto(nh, data, p, end, src, dst, depth)


def _ip_proto(proto, data, p, end, src, dst, depth):
    """What follows an IP header (TCP after AH; tunnels; UDP-carried overlays)."""
    if proto == 6:
        return _tcp(data, p, end, src, dst)
    if depth >= _MAX_DEPTH:
        return None
    if proto == 51:                      # AH: skip it (the payload is in the clear)
        return _ip_proto(data[p], data, p + ((data[p + 1] + 2) << 2), end, src, dst,
                         depth + 1)
    if proto == 4:
        return _ip4(data, p, end, depth + 1)
    if proto == 41:
        return _ip6(data, p, end, depth + 1)
    if proto == 47:
        return _gre(data, p, end, depth + 1)
    if proto == 17:
        return _udp(data, p, end, depth + 1)
    if proto == 1:
        return _icmp_quote(data, p, end, ICMP_ERRORS)
    if proto == 58:
        return _icmp_quote(data, p, end, ICMP6_ERRORS)
    return None


def _icmp_quote(data, p, end, errors):
    """The TCP header an ICMP(v6) error at ``p`` quotes, as an ``ICMP_QUOTE`` segment."""
    if data[p] not in errors:
        return None
    q = p + 8                            # the quoted IP header
    version = data[q] >> 4
    if version == 4:
        ihl = (data[q] & 15) << 2
        if ihl < 20 or data[q + 9] != 6:
            return None
        src, dst, t = data[q + 12:q + 16], data[q + 16:q + 20], q + ihl
    elif version == 6:
        if data[q + 6] != 6:
            return None
        src, dst, t = data[q + 8:q + 24], data[q + 24:q + 40], q + 40
    else:
        return None
    if t + QUOTED_TCP_LEAST > min(len(data), end):
        return None
    sport, dport, seq, ack, _, flags, win = _TCP(data, t)
    return _segment(Segment, (src, dst, sport, dport, seq, ack, flags | ICMP_QUOTE, win,
                              data[0:0], 0))


# the UDP ports _udp looks inside: VXLAN, GENEVE, VXLAN-GPE, GTP-U, CAPWAP data
UDP_TUNNEL_PORTS = frozenset((4789, 6081, 4790, 2152, 5247))


def _udp(data, p, end, depth):
    sport, dport, ulen = _HHH(data, p)
    if ulen >= 8 and p + ulen < end:
        end = p + ulen
    q = p + 8
    if dport == 4789 or sport == 4789:                        # VXLAN
        return _eth(data, q + 8, end, depth)
    if dport == 6081 or sport == 6081:                        # GENEVE
        ptype = (data[q + 2] << 8) | data[q + 3]
        return _ethertype(ptype, data, q + 8 + ((data[q] & 0x3F) << 2), end, depth)
    if dport == 4790 or sport == 4790:                        # VXLAN-GPE
        nxt = data[q + 3]
        if nxt == 1:
            return _ip4(data, q + 8, end, depth)
        if nxt == 2:
            return _ip6(data, q + 8, end, depth)
        if nxt == 3:
            return _eth(data, q + 8, end, depth)
    if dport == 2152 or sport == 2152:                        # GTP-U
        return _gtpu(data, q, end, depth)
    if dport == 5247 or sport == 5247:                        # CAPWAP data
        return _capwap(data, q, end, depth)
    return None


def _gtpu(data, p, end, depth):
    """GTPv1-U (3GPP TS 29.281): a G-PDU carries the user's IP packet."""
    flags = data[p]
    if flags >> 5 != 1 or not flags & 0x10 or data[p + 1] != 0xFF:
        return None                      # not GTPv1, GTP' or not a G-PDU
    q = p + 8
    if flags & 0x07:                     # sequence number, N-PDU number, next extension
        next_type = data[q + 3]
        q += 4
        while next_type:                 # extension headers, 4-byte units
            size = data[q] << 2
            if not size:
                return None
            next_type = data[q + size - 1]
            q += size
    return _ip_any(data, q, end, depth)


def _capwap(data, p, end, depth):
    """CAPWAP data channel (RFC 5415 section 4.3): an 802.3 or 802.11 frame."""
    if data[p] != 0:                     # version 0, type 0: a CAPWAP header (1: DTLS)
        return None
    hlen = (data[p + 1] >> 3) << 2
    native = data[p + 2] & 0x01          # T: the binding's native frame format
    wbid = (data[p + 2] >> 1) & 0x1F
    if data[p + 3] & 0x80 or hlen < 8:   # a fragment: not reassembled
        return None
    q = p + hlen
    if not native:
        return _eth(data, q, end, depth)
    if wbid == 1:                        # IEEE 802.11
        return _wlan(data, q, end, depth)
    return None


def _wlan(data, p, end, depth):
    """An IEEE 802.11 data frame: LLC/SNAP after its MAC header. Some access points
    put the frame control field in the other byte order (as Wireshark's CAPWAP
    dissector swaps it by default): whichever order makes a data frame."""
    fc, flags = data[p], data[p + 1]
    if (fc >> 2) & 3 != 2 and (flags >> 2) & 3 == 2:
        fc, flags = flags, fc
    if (fc >> 2) & 3 != 2 or flags & 0x40:
        return None                      # not a data frame, or protected
    q = p + 24
    if flags & 0x03 == 0x03:
        q += 6                           # a fourth address
    if fc & 0x80:                        # QoS data
        q += 2
        if flags & 0x80:
            q += 4                       # HT control
    return _llc(data, q, end, depth)


def _gre(data, p, end, depth):
    flags, proto = _HH(data, p)
    q = p + 4
    ver = flags & 7
    if ver == 0:
        if flags & 0x4000:
            return None                  # source routing (RFC 1701): not worth it
        if flags & 0x8000:
            q += 4                       # checksum + reserved
        if flags & 0x2000:
            q += 4                       # key
        if flags & 0x1000:
            q += 4                       # sequence number
    elif ver == 1:                       # enhanced GRE (PPTP): key always there
        if proto != ET_PPP:
            return None
        q += 4
        if flags & 0x1000:
            q += 4                       # sequence number
        if flags & 0x0080:
            q += 4                       # acknowledgment number
        return _ppp(data, q, end, depth)
    else:
        return None
    if proto == ET_ERSPAN2:
        if flags & 0x1000:
            q += 8                       # ERSPAN type II header (type I has none)
        return _eth(data, q, end, depth)
    if proto == ET_ERSPAN3:
        x = (data[q + 10] << 8) | data[q + 11]
        ft = (x >> 10) & 0x1F            # frame type: 0 Ethernet, 2 IP
        q += 20 if x & 1 else 12         # O bit: 8-byte platform sub-header
        if ft == 0:
            return _eth(data, q, end, depth)
        if ft == 2:
            return _ip_any(data, q, end, depth)
        return None
    return _ethertype(proto, data, q, end, depth)


# --------------------------------------------------------------------------- link layers

def _ethertype(et, data, p, end, depth):
    """Dispatch on an Ethertype (Ethernet, SLL, GRE, GENEVE ...) for the bytes at p."""
    while et == ET_VLAN or et == ET_QINQ or et == ET_QINQ_OLD:
        et = (data[p + 2] << 8) | data[p + 3]
        p += 4
    if et == ET_IPV4:
        return _ip4(data, p, end, depth)
    if et == ET_IPV6:
        return _ip6(data, p, end, depth)
    if depth >= _MAX_DEPTH:
        return None
    if et == ET_TEB:
        return _eth(data, p, end, depth + 1)
    if et == ET_MPLS or et == ET_MPLS_MC:
        while not data[p + 2] & 1:       # labels until bottom of stack
            p += 4
        p += 4
        v = data[p] >> 4
        if v == 4:
            return _ip4(data, p, end, depth + 1)
        if v == 6:
            return _ip6(data, p, end, depth + 1)
        # Ethernet pseudowire, like Wireshark's heuristic: plain Ethernet when an
        # Ethertype we know sits at 12, else a control word (first nibble 0) first
        if ((data[p + 12] << 8) | data[p + 13]) in _PW_ETHERTYPES:
            return _eth(data, p, end, depth + 1)
        if v == 0 and ((data[p + 16] << 8) | data[p + 17]) in _PW_ETHERTYPES:
            return _eth(data, p + 4, end, depth + 1)
        return None
    if et == ET_PPPOE_SESS:
        plen = (data[p + 4] << 8) | data[p + 5]
        if p + 6 + plen < end:
            end = p + 6 + plen
        return _ppp_proto(data, p + 6, end, depth + 1)
    if et <= 1500:                       # 802.3 length field: LLC/SNAP
        return _llc(data, p, end, depth + 1)
    return None


def _eth(data, p, end, depth):
    return _ethertype((data[p + 12] << 8) | data[p + 13], data, p + 14, end, depth)


def _llc(data, p, end, depth):
    if data[p] == 0xAA and data[p + 1] == 0xAA and data[p + 2] == 0x03:
        return _ethertype((data[p + 6] << 8) | data[p + 7], data, p + 8, end, depth)
    return None


def _ip_any(data, p, end, depth):
    v = data[p] >> 4
    if v == 4:
        return _ip4(data, p, end, depth)
    if v == 6:
        return _ip6(data, p, end, depth)
    return None


def _ppp(data, p, end, depth):
    """PPP with or without the HDLC address/control bytes (ff 03)."""
    if data[p] == 0xFF and data[p + 1] == 0x03:
        p += 2
    return _ppp_proto(data, p, end, depth)


def _ppp_proto(data, p, end, depth):
    proto = data[p]
    if proto & 1:                        # protocol field compressed to one byte
        p += 1
    else:
        proto = (proto << 8) | data[p + 1]
        p += 2
    if proto == 0x21:
        return _ip4(data, p, end, depth)
    if proto == 0x57:
        return _ip6(data, p, end, depth)
    return None


def _by_family(fam, data, limit):
    """The IP packet after a 4-byte address family (BSD loopback headers)."""
    if fam == 2:
        return _ip4(data, 4, limit, 0)
    if fam in _AF_INET6:
        return _ip6(data, 4, limit, 0)
    return None


def _link_null(data, limit):
    fam = _LE_I(data, 0)[0]
    if fam > 0xFFFF:                     # written in the other byte order
        fam = _BE_I(data, 0)[0]
    return _by_family(fam, data, limit)


def _link_loop(data, limit):             # OpenBSD loopback: family in network order
    return _by_family(_BE_I(data, 0)[0], data, limit)


def _link_raw(data, limit):
    return _ip_any(data, 0, limit, 0)


def _link_eth(data, limit):
    return _eth(data, 0, limit, 0)


def _link_sll(data, limit):              # Linux cooked v1: protocol at 14
    return _ethertype((data[14] << 8) | data[15], data, 16, limit, 0)


def _link_sll2(data, limit):             # Linux cooked v2: protocol at 0, 20-byte header
    return _ethertype((data[0] << 8) | data[1], data, 20, limit, 0)


def _link_ppp(data, limit):
    return _ppp(data, 0, limit, 0)


def _link_pppoe(data, limit):            # LINKTYPE_PPP_ETHER: PPPoE header, no Ethernet
    return _ethertype(ET_PPPOE_SESS, data, 0, limit, 0)


def _link_chdlc(data, limit):            # Cisco HDLC: address, control, Ethertype
    return _ethertype((data[2] << 8) | data[3], data, 4, limit, 0)


def _link_pflog(data, limit):
    hlen = data[0]                       # header length, padded to 4 bytes
    af = data[1]
    p = (hlen + 3) & ~3
    if af == 2:
        return _ip4(data, p, limit, 0)
    if af in _AF_INET6:
        return _ip6(data, p, limit, 0)
    return None


def _link_ppi(data, limit):              # PPI: little-endian length and inner DLT
    hlen, _ = _LE_HH(data, 2)
    dlt = _LE_I(data, 4)[0]
    if dlt == LINKTYPE_PPI or hlen < 8:
        return None
    return decode(dlt, data[hlen:], limit - hlen)


# ------------------------------------------------------------------------ dpkt fallback

def _dpkt_classes():
    """Link types handed to dpkt, imported lazily (dpkt's import is slow-ish)."""
    import dpkt.ieee80211
    import dpkt.radiotap
    return {LINKTYPE_IEEE802_11: dpkt.ieee80211.IEEE80211,
            LINKTYPE_IEEE802_11_RADIOTAP: dpkt.radiotap.Radiotap}


_DPKT = None
_DPKT_LINKTYPES = frozenset((LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP))


def _dpkt_fallback(linktype, data, limit):
    """802.11 and radiotap through dpkt: find the 802.2 LLC/SNAP bytes of a data frame,
    locate them in the frame, and carry on with our own Ethertype/IP decoding so that
    lengths, padding and tunnels are handled as everywhere else."""
    global _DPKT
    if _DPKT is None:
        _DPKT = _dpkt_classes()
    obj = _DPKT[linktype](bytes(data))
    for _ in range(4):
        if type(obj).__name__ == "IEEE80211":
            if obj.type != 2 or getattr(obj, "wep", 0):
                return None              # not a data frame, or protected
            body = obj.data
            if not isinstance(body, (bytes, bytearray)) or len(body) < 8:
                return None
            # dpkt stops short of 802.11n HT control (order bit): skip it when present
            if body[:3] != b"\xaa\xaa\x03" and body[4:7] == b"\xaa\xaa\x03":
                body = body[4:]
            p = bytes(data).find(bytes(body[:64]))
            if p < 0:
                return None
            return _llc(data, p, limit, 0)
        nxt = getattr(obj, "data", None)
        if nxt is None or isinstance(nxt, (bytes, bytearray)):
            return None
        obj = nxt
    return None


# ------------------------------------------------------------------------------ public

_LINK = {
    LINKTYPE_NULL: _link_null,
    LINKTYPE_ETHERNET: _link_eth,
    LINKTYPE_PPP: _link_ppp,
    LINKTYPE_RAW_BSD: _link_raw,
    LINKTYPE_RAW_OPENBSD: _link_raw,
    LINKTYPE_PPP_HDLC: _link_ppp,
    LINKTYPE_PPP_ETHER: _link_pppoe,
    LINKTYPE_RAW: _link_raw,
    LINKTYPE_C_HDLC: _link_chdlc,
    LINKTYPE_LOOP: _link_loop,
    LINKTYPE_LINUX_SLL: _link_sll,
    LINKTYPE_PFLOG: _link_pflog,
    LINKTYPE_PPI: _link_ppi,
    LINKTYPE_IPV4: _link_raw,      # Wireshark goes by the version nibble all the same
    LINKTYPE_IPV6: _link_raw,
    LINKTYPE_LINUX_SLL2: _link_sll2,
}

SUPPORTED_LINKTYPES = frozenset(_LINK) | _DPKT_LINKTYPES


def decode(linktype, data, orig_len):
    """Decode one frame down to its (innermost) TCP segment.

    Returns its ``Segment``, or None for anything that is not a TCP segment we
    can place. Never raises.
    """
    limit = len(data)
    if orig_len > limit:
        limit = orig_len
    try:
        if linktype == LINKTYPE_ETHERNET:        # fast path: Ethernet + IPv4
            if data[12:15] == b"\x08\x00\x45" and limit >= 54:
                # no VLAN, IPv4 without options: both headers in one unpack
                (tot, frag, proto, src, dst, sport, dport, seq, ack, offx, flags,
                 win) = _ETH_IP4_TCP(data, 16)
                if proto == 6 and not frag & 0x3FFF and 40 <= tot:
                    end = 14 + tot if 14 + tot <= limit else limit
                    ps = 34 + ((offx >> 4) << 2)
                    n = len(data)
                    if 54 <= ps <= end and end <= n:
                        return _segment(Segment, (src, dst, sport, dport, seq, ack, flags, win,
                                                  data[ps:end], 0))
            et = (data[12] << 8) | data[13]
            if et == 0x0800:
                return _ip4(data, 14, limit, 0)
            return _ethertype(et, data, 14, limit, 0)
        f = _LINK.get(linktype)
        if f is not None:
            return f(data, limit)
        if linktype in _DPKT_LINKTYPES:
            return _dpkt_fallback(linktype, data, limit)
        return None
    except Exception:                    # hostile or truncated bytes: not a segment
        return None


# (address, port) -> its text, for the last few thousand asked for: a connection's
# is asked for once per record it lists (the records command), a server's for
# every connection to it
_ENDPOINTS = {}
ENDPOINTS_KEPT = 4096


def format_endpoint(addr, port):
    """'10.0.0.2:50432' or '[2001:db8::1]:443'."""
    if type(addr) is not bytes:
        addr = bytes(addr)           # (a view would keep its whole buffer alive in the cache)
    key = (addr, port)
    text = _ENDPOINTS.get(key)
    if text is None:
        if len(_ENDPOINTS) >= ENDPOINTS_KEPT:
            _ENDPOINTS.clear()
        text = _ENDPOINTS[key] = _endpoint_text(addr, port)
    return text


def _endpoint_text(addr, port):
    if len(addr) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, addr)}:{port}"
    if len(addr) == 16:
        return f"[{socket.inet_ntop(socket.AF_INET6, addr)}]:{port}"
    return f"[{addr.hex()}]:{port}"
