"""frame.py: link layers, IP variants, tunnels, truncation, garbage, and the corpus.

Fixtures are hex, one piece per layer.  Unless said otherwise the innermost packet is
IPv4 10.0.0.2 -> 93.184.216.34 (or IPv6 2001:db8::1 -> 2001:db8::2), TCP 50432 -> 443,
seq 1, ack 2, PSH|ACK, window 65535, payload "hello".
"""
import ipaddress
import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from conftest import CORPUS, corpus_files
from pcap_tls_split.capture import open_capture
from pcap_tls_split.frame import ICMP_QUOTE, SUPPORTED_LINKTYPES, decode, format_endpoint
from test_capture import epb, idb, innermost, shb, tshark_corpus


def h(*parts):
    return bytes.fromhex("".join(parts).replace(" ", ""))


# --- innermost layers --------------------------------------------------------------
PL = "68656c6c6f"                                       # payload: "hello"
TCP = ("c500 01bb"                                      # TCP: sport 50432, dport 443
       " 00000001 00000002"                             #      seq 1, ack 2
       " 50 18 ffff 0000 0000")                         #      hlen 20, PSH|ACK, win, sum, urg
IP4 = ("45 00 002d 1234 4000 40 06 0000"                # IPv4: ihl 5, total 45, DF, TCP
       " 0a000002 5db8d822")                            #       10.0.0.2 -> 93.184.216.34
IP6 = ("6000 0000 0019 06 40"                           # IPv6: payload 25, next TCP
       " 20010db8000000000000000000000001"              #       src 2001:db8::1
       " 20010db8000000000000000000000002")             #       dst 2001:db8::2
V4 = IP4 + TCP + PL                                     # 45 bytes
V6 = IP6 + TCP + PL                                     # 65 bytes
ETH = "0200000000aa 0200000000bb"                       # Ethernet: dst, src (type follows)
OUT4 = "c0000201 c0000202"                              # outer IPv4 addresses 192.0.2.1/.2

A4 = (ipaddress.ip_address("10.0.0.2").packed, ipaddress.ip_address("93.184.216.34").packed)
A6 = (ipaddress.ip_address("2001:db8::1").packed, ipaddress.ip_address("2001:db8::2").packed)
SEG4 = A4 + (50432, 443, 1, 2, 0x18, 0xFFFF, b"hello", 0)
SEG6 = A6 + (50432, 443, 1, 2, 0x18, 0xFFFF, b"hello", 0)

# (id, linktype, frame hex, expected: SEG4 / SEG6 / None)
CASES = [
    # ---------------------------------------------------------------- Ethernet family
    ("eth-ipv4", 1, ETH + " 0800" + V4, SEG4),
    ("eth-ipv6", 1, ETH + " 86dd" + V6, SEG6),
    ("eth-vlan", 1, ETH + " 8100 0064 0800" + V4, SEG4),            # 802.1Q VLAN 100
    ("eth-qinq", 1, ETH + " 88a8 00c8 8100 0064 0800" + V4, SEG4),  # S-tag 200, C-tag 100
    ("eth-qinq-9100", 1, ETH + " 9100 00c8 8100 0064 86dd" + V6, SEG6),
    ("eth-mpls", 1, ETH + " 8847 00001140" + V4, SEG4),             # label 1, bottom, ttl 64
    ("eth-mpls2", 1, ETH + " 8847 00002040 00001140" + V6, SEG6),   # two labels
    ("eth-mpls-pw-cw", 1, ETH + " 8847 00001140 00000000"           # MPLS, PW control word
     " 0a1b2c3d4e5f 020112345678 0800" + V4, SEG4),                 # inner Ethernet
    ("eth-mpls-pw", 1, ETH + " 8847 00001140"                       # MPLS, no control word
     " 0a1b2c3d4e5f 020112345678 8100 0064 0800" + V4, SEG4),       # inner Ethernet, VLAN
    ("eth-pppoe", 1, ETH + " 8864 1100 0001 002f 0021" + V4, SEG4),  # PPPoE sess, PPP IPv4
    ("eth-llc-snap", 1, ETH + " 0035 aaaa03 000000 0800" + V4, SEG4),  # 802.3 + LLC/SNAP
    # ---------------------------------------------------------------- loopback and raw
    ("null-le-inet", 0, "02000000" + V4, SEG4),                     # NULL: AF_INET, LE
    ("null-be-inet", 0, "00000002" + V4, SEG4),                     # NULL: AF_INET, BE
    ("null-le-inet6-24", 0, "18000000" + V6, SEG6),                 # AF_INET6 NetBSD/OpenBSD
    ("null-le-inet6-28", 0, "1c000000" + V6, SEG6),                 # AF_INET6 FreeBSD
    ("null-le-inet6-30", 0, "1e000000" + V6, SEG6),                 # AF_INET6 macOS
    ("null-be-inet6-30", 0, "0000001e" + V6, SEG6),
    ("null-unknown-af", 0, "07000000" + V4, None),
    ("loop-inet", 108, "00000002" + V4, SEG4),                      # OpenBSD LOOP: BE family
    ("loop-inet6", 108, "00000018" + V6, SEG6),
    ("raw-101-v4", 101, V4, SEG4),                                  # LINKTYPE_RAW
    ("raw-101-v6", 101, V6, SEG6),
    ("raw-12-v4", 12, V4, SEG4),
    ("raw-14-v6", 14, V6, SEG6),
    ("ipv4-228", 228, V4, SEG4),
    ("ipv6-229", 229, V6, SEG6),
    ("ipv4-228-given-v6", 228, V6, SEG6),                           # version nibble wins
    # ---------------------------------------------------------------- Linux cooked
    ("sll", 113, "0000 0001 0006 0200000000aa0000 0800" + V4, SEG4),  # type, ARPHRD, alen,
    ("sll-v6", 113, "0004 0001 0006 0200000000aa0000 86dd" + V6, SEG6),  # addr, protocol
    ("sll-vlan", 113, "0000 0001 0006 0200000000aa0000 8100 0064 0800" + V4, SEG4),
    ("sll2", 276, "0800 0000 00000002 0001 00 06 0200000000aa0000" + V4, SEG4),  # proto,
    ("sll2-v6", 276, "86dd 0000 00000002 0001 04 06 0200000000aa0000" + V6, SEG6),  # ..addr
    # ---------------------------------------------------------------- PPP and friends
    ("ppp", 9, "ff03 0021" + V4, SEG4),                             # PPP: addr, ctl, IPv4
    ("ppp-nohdlc", 9, "0057" + V6, SEG6),                           # PPP: IPv6, no ff03
    ("ppp-pfc", 9, "21" + V4, SEG4),                                # compressed protocol
    ("ppp-hdlc", 50, "ff03 0021" + V4, SEG4),
    ("ppp-ether", 51, "1100 0001 002f 0021" + V4, SEG4),            # PPPoE header, PPP
    ("chdlc", 104, "0f00 0800" + V4, SEG4),                         # Cisco HDLC
    ("pflog", 117, "3d 02 0000" + "00" * 60 + V4, SEG4),            # pflog hdr 61 -> 64
    ("ppi-eth", 192, "00 00 0800 01000000" + ETH + " 0800" + V4, SEG4),  # PPI, DLT 1
    # ---------------------------------------------------------------- 802.11 (dpkt)
    ("wlan-data", 105, "0801 0000 020000000001 020000000002 020000000003 0000"  # to-DS
     " aaaa03 000000 0800" + V4, SEG4),                                          # LLC/SNAP
    ("wlan-qos", 105, "8802 0000 020000000001 020000000002 020000000003 0000 0000"
     " aaaa03 000000 86dd" + V6, SEG6),                             # QoS data, from-DS
    ("wlan-protected", 105, "0841 0000 020000000001 020000000002 020000000003 0000"
     " aaaa03 000000 0800" + V4, None),                             # protected: opaque
    ("radiotap-wlan", 127, "00 00 0800 00000000"                    # radiotap: len 8
     " 0801 0000 020000000001 020000000002 020000000003 0000 aaaa03 000000 0800"
     + V4, SEG4),
    ("radiotap-wlan-fcs", 127, "00 00 0900 02000000 10"             # flags: FCS at end
     " 0801 0000 020000000001 020000000002 020000000003 0000 aaaa03 000000 0800"
     + V4 + " deadbeef", SEG4),
    # ---------------------------------------------------------------- IPv4 variants
    ("ipv4-options", 101, "46 00 0031 1234 4000 40 06 0000 0a000002 5db8d822"
     " 01010100" + TCP + PL, SEG4),                                 # IHL 6: NOP NOP NOP EOL
    ("ipv4-more-fragments", 101, "45 00 002d 1111 2000 40 06 0000 0a000002 5db8d822"
     + TCP + PL, None),                                             # MF: first fragment
    ("ipv4-fragment-offset", 101, "45 00 002d 2222 0001 40 06 0000 0a000002 5db8d822"
     + TCP + PL, None),                                             # offset 8: later frag
    ("ipv4-ah", 101, "45 00 0045 1234 4000 40 33 0000 0a000002 5db8d822"  # proto 51
     " 06 04 0000 00000100 00000001 000000000000000000000000"      # AH: next TCP, 24 B
     + TCP + PL, SEG4),
    ("ipv4-esp", 101, "45 00 0030 1234 4000 40 32 0000 0a000002 5db8d822"
     " 00000100 00000001" + "00" * 20, None),                       # ESP: encrypted
    ("ipv4-bad-version", 1, ETH + " 0800 55" + V4[2:], None),
    ("ipv4-bad-ihl", 1, ETH + " 0800 44" + V4[2:], None),
    # ---------------------------------------------------------------- IPv6 variants
    ("ipv6-ext-chain", 101, "6000 0000 0039 00 40"                  # next: hop-by-hop
     " 20010db8000000000000000000000001 20010db8000000000000000000000002"
     " 2b00 0104 00000000"                                          # HBH -> routing, PadN
     " 3c00 fd00 00000000"                                          # routing (type 253)
     " 2c00 0104 00000000"                                          # dst opts -> fragment
     " 0600 0000 00000001"                                          # atomic fragment->TCP
     + TCP + PL, SEG6),
    ("ipv6-more-fragments", 101, "6000 0000 0021 2c 40"
     " 20010db8000000000000000000000001 20010db8000000000000000000000002"
     " 0600 0001 00000011" + TCP + PL, None),                       # M=1
    ("ipv6-fragment-offset", 101, "6000 0000 0021 2c 40"
     " 20010db8000000000000000000000001 20010db8000000000000000000000002"
     " 0600 0008 00000022" + TCP + PL, None),                       # offset 8
    ("ipv6-ah", 101, "6000 0000 0031 33 40"                         # next: AH
     " 20010db8000000000000000000000001 20010db8000000000000000000000002"
     " 06 04 0000 00000100 00000001 000000000000000000000000" + TCP + PL, SEG6),
    ("ipv6-no-next", 101, "6000 0000 0000 3b 40"
     " 20010db8000000000000000000000001 20010db8000000000000000000000002", None),
    # ---------------------------------------------------------------- tunnels
    ("ipip", 101, "45 00 0041 0000 0000 40 04 0000" + OUT4 + V4, SEG4),   # outer proto 4
    ("6in4", 101, "45 00 0055 0000 0000 40 29 0000" + OUT4 + V6, SEG6),   # outer proto 41
    ("4in6", 101, "6000 0000 002d 04 40"                                  # IPv6 next 4
     " 20010db8000000000000000000000009 20010db800000000000000000000000a" + V4, SEG4),
    ("gre-ipv4", 1, ETH + " 0800 45 00 0045 0000 0000 40 2f 0000" + OUT4   # outer proto 47
     + " 0000 0800" + V4, SEG4),                                           # GRE: IPv4
    ("gre-csum-key-seq", 101, "45 00 0051 0000 0000 40 2f 0000" + OUT4
     + " b000 0800 0000 0000 00000001 00000001" + V4, SEG4),       # GRE C,K,S: 12 more B
    ("gre-ipv6", 101, "45 00 0059 0000 0000 40 2f 0000" + OUT4 + " 0000 86dd" + V6, SEG6),
    ("gre-teb", 101, "45 00 0053 0000 0000 40 2f 0000" + OUT4      # GRE: Ethernet bridging
     + " 0000 6558" + ETH + " 0800" + V4, SEG4),
    ("gre-erspan1", 101, "45 00 0053 0000 0000 40 2f 0000" + OUT4  # ERSPAN I: no header
     + " 0000 88be" + ETH + " 0800" + V4, SEG4),
    ("gre-erspan2", 101, "45 00 005f 0000 0000 40 2f 0000" + OUT4  # GRE S, ERSPAN II
     + " 1000 88be 00000001"
     " 1001 0001 00000000"                                         # ERSPAN II: ver 1, 8 B
     + ETH + " 0800" + V4, SEG4),
    ("gre-erspan3", 101, "45 00 0063 0000 0000 40 2f 0000" + OUT4  # ERSPAN III, 12 B
     + " 1000 22eb 00000001"
     " 2001 0001 00000000 0000 0000"                               # ver 2, ts, sgt, FT 0
     + ETH + " 0800" + V4, SEG4),
    ("gre-erspan3-o", 101, "45 00 006b 0000 0000 40 2f 0000" + OUT4
     + " 1000 22eb 00000001"
     " 2001 0001 00000000 0000 0001 0000000000000000"              # O bit: +8 B sub-header
     + ETH + " 0800" + V4, SEG4),
    ("gre-pptp", 101, "45 00 0051 0000 0000 40 2f 0000" + OUT4     # enhanced GRE (v1)
     + " 3001 880b 0031 0000 00000001"                             # K,S: len 49, call, seq
     " ff03 0021" + V4, SEG4),                                     # PPP: IPv4
    ("vxlan", 1, ETH + " 0800 45 00 005f 0000 0000 40 11 0000" + OUT4   # outer UDP
     + " 3039 12b5 004b 0000"                                      # UDP 12345 -> 4789
     " 08000000 00000100"                                          # VXLAN: I, VNI 1
     + ETH + " 0800" + V4, SEG4),
    ("geneve-eth-opts", 101, "45 00 0067 0000 0000 40 11 0000" + OUT4
     + " 3039 17c1 0053 0000"                                      # UDP -> 6081
     " 02 00 6558 00000100"                                        # GENEVE: 2 opt words
     " 0101 01 01 00000000"                                        # one option, 4 B data
     + ETH + " 0800" + V4, SEG4),
    ("geneve-ipv4", 101, "45 00 0051 0000 0000 40 11 0000" + OUT4
     + " 3039 17c1 003d 0000 00 00 0800 00000100" + V4, SEG4),     # GENEVE carrying IPv4
    ("vxlan-gpe", 101, "45 00 0051 0000 0000 40 11 0000" + OUT4
     + " 3039 12b6 003d 0000 0c000001 00000100" + V4, SEG4),       # VXLAN-GPE, next IPv4
    ("udp-other", 101, "45 00 0051 0000 0000 40 11 0000" + OUT4
     + " 3039 0035 003d 0000 0c000001 00000100" + V4, None),       # UDP to 53: not ours
    # ---------------------------------------------------------------- not TCP
    ("arp", 1, ETH + " 0806 0001 0800 06 04 0001 0200000000bb 0a000002"
     " 000000000000 0a000001", None),
    ("icmp-echo", 101, "45 00 001c 0000 0000 40 01 0000" + OUT4 + " 0800 f7ff 0000 0000",
     None),
    ("icmp-quoting-tcp", 101, "45 00 0049 0000 0000 40 01 0000" + OUT4  # ICMP unreachable
     + " 0301 0000 00000000" + V4,                                 # quoting our segment
     A4 + (50432, 443, 1, 2, 0x18 | ICMP_QUOTE, 65535, b"", 0)),
    ("icmp-quoting-8-tcp-bytes", 101, "45 00 0030 0000 0000 40 01 0000" + OUT4  # too short:
     + " 0301 0000 00000000" + V4[:56], None),                     # no stream number
    ("unknown-linktype", 147, V4, None),
]


@pytest.mark.parametrize("lt,hexstr,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_cases(lt, hexstr, expected):
    data = h(hexstr)
    assert decode(lt, data, len(data)) == expected


def test_every_supported_linktype_has_a_case():
    assert SUPPORTED_LINKTYPES <= {c[1] for c in CASES}


def test_ethernet_padding_and_trailer_trimmed():
    # Ethernet | IPv4 total 40 | TCP ACK, no payload | 6 bytes of padding
    ack = h(ETH, "0800", "45 00 0028 1234 4000 40 06 0000 0a000002 5db8d822",
            "c500 01bb 00000001 00000002 50 10 ffff 0000 0000", "000000000000")
    assert len(ack) == 60
    seg = decode(1, ack, 60)
    assert seg[6] == 0x10 and seg[8] == b"" and seg[9] == 0
    # ... and a data segment with an FCS trailer after it
    fr = h(ETH, "0800", V4, "deadbeef")
    assert decode(1, fr, len(fr)) == SEG4


def test_snap_length_cut_counts_missing_bytes():
    # IPv4 total 140: 100 bytes of payload announced, 10 captured (frame was 154 bytes)
    fr = h(ETH, "0800", "45 00 008c 1234 4000 40 06 0000 0a000002 5db8d822", TCP,
           "00112233445566778899")
    seg = decode(1, fr, 154)
    assert seg[8] == h("00112233445566778899") and seg[9] == 90
    # the same cut inside a tunnel (VXLAN): the inner IP length counts
    full = h(ETH, "0800 45 00 005f 0000 0000 40 11 0000", OUT4,
             "3039 12b5 004b 0000 08000000 00000100", ETH, "0800", V4)
    seg = decode(1, full[:-3], len(full))
    assert seg[8] == b"he" and seg[9] == 3


def test_ip_total_length_beyond_frame_is_trimmed_not_missing():
    # IPv4 says 200 bytes but the frame on the wire was only 59: bogus, nothing missing
    fr = h(ETH, "0800", "45 00 00c8 1234 4000 40 06 0000 0a000002 5db8d822", TCP, PL)
    seg = decode(1, fr, len(fr))
    assert seg[8] == b"hello" and seg[9] == 0


def test_ipv4_total_length_zero_tso_uses_frame():
    fr = h(ETH, "0800", "45 00 0000 1234 4000 40 06 0000 0a000002 5db8d822", TCP, PL)
    assert decode(1, fr, len(fr)) == SEG4


def test_ipv6_payload_length_zero_uses_frame():
    fr = h("6000 0000 0000 06 40 20010db8000000000000000000000001"
           " 20010db8000000000000000000000002", TCP, PL)
    assert decode(101, fr, len(fr)) == SEG6


@pytest.mark.parametrize("name", ["eth-ipv4", "eth-ipv6", "vxlan", "ipv6-ext-chain",
                                  "gre-erspan2", "sll2", "null-le-inet6-30"])
def test_every_truncation(name):
    """Cut a frame at every length: headers cut -> None, payload cut -> missing."""
    _, lt, hexstr, expected = next(c for c in CASES if c[0] == name)
    full = h(hexstr)
    head = len(full) - 5                 # all our cases end in TCP (20 B) + "hello"
    for k in range(len(full) + 1):
        seg = decode(lt, full[:k], len(full))
        if k < head:
            assert seg is None, k
        else:
            assert seg[:8] == expected[:8], k
            assert seg[8] == b"hello"[:k - head] and seg[9] == len(full) - k, k


def test_tcp_options_cut_by_snaplen_still_a_segment():
    # Ethernet | IPv4 total 60 | TCP SYN, hlen 40 (20 B of options) cut after 14 of them
    fr = h(ETH, "0800", "45 00 003c 38e0 4000 33 06 0000 c9ba9d43 80031af9",
           "ed9b 0019 3e1775de 00000000 a0 02 16d0 0000 0000", "020405b4040208080000000001")
    assert len(fr) == 67
    seg = decode(1, fr, 74)
    assert seg[2:7] == (60827, 25, 0x3E1775DE, 0, 0x02)
    assert seg[8] == b"" and seg[9] == 0


def test_bad_tcp_header_lengths():
    bad_off = h("45 00 002d 1234 4000 40 06 0000 0a000002 5db8d822",
                "c500 01bb 00000001 00000002 40 18 ffff 0000 0000", PL)    # hlen 16
    assert decode(101, bad_off, len(bad_off)) is None
    past_ip = h("45 00 002d 1234 4000 40 06 0000 0a000002 5db8d822",
                "c500 01bb 00000001 00000002 f0 18 ffff 0000 0000", PL)    # hlen 60 > 25
    assert decode(101, past_ip, len(past_ip)) is None
    short_ip = h("45 00 0020 1234 4000 40 06 0000 0a000002 5db8d822", TCP, PL)  # total 32
    assert decode(101, short_ip, len(short_ip)) is None


def test_deep_nesting_gives_up():
    inner = h(V4)
    for _ in range(30):                  # IPv4 in IPv4 in IPv4 ...
        inner = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), 0, 0, 64, 4, 0,
                            b"\xc0\0\2\1", b"\xc0\0\2\2") + inner
    assert decode(101, inner, len(inner)) is None
    assert decode(101, inner[-65:], 65) == SEG4  # two levels are fine


def test_memoryview_input():
    data = h(ETH, "0800", V4)
    seg = decode(1, memoryview(data), len(data))
    assert bytes(seg[8]) == b"hello" and seg[2:8] == SEG4[2:8]


LINKTYPES = sorted(SUPPORTED_LINKTYPES | {147, 65535})


@settings(max_examples=400, deadline=None)
@given(lt=st.sampled_from(LINKTYPES), data=st.binary(max_size=120),
       extra=st.integers(0, 100))
def test_garbage_never_raises(lt, data, extra):
    check_result(decode(lt, data, len(data) + extra))


@settings(max_examples=400, deadline=None)
@given(case=st.sampled_from(CASES), flips=st.lists(st.tuples(st.integers(0, 200),
                                                             st.integers(0, 255)),
                                                   max_size=4),
       cut=st.integers(0, 200))
def test_mutated_frames_never_raise(case, flips, cut):
    data = bytearray(h(case[2]))
    for i, v in flips:
        if i < len(data):
            data[i] = v
    check_result(decode(case[1], bytes(data[:cut]), len(data)))


def check_result(r):
    if r is None:
        return
    src, dst, sport, dport, seq, ack, flags, win, payload, missing = r
    assert len(src) == len(dst) and len(src) in (4, 16)
    assert 0 <= sport < 65536 and 0 <= dport < 65536 and 0 <= flags & ~ICMP_QUOTE < 256
    assert 0 <= seq < 2 ** 32 and 0 <= ack < 2 ** 32 and 0 <= win < 65536
    assert missing >= 0 and isinstance(payload, (bytes, memoryview))


def test_format_endpoint():
    assert format_endpoint(A4[0], 50432) == "10.0.0.2:50432"
    assert format_endpoint(A6[0], 443) == "[2001:db8::1]:443"
    assert format_endpoint(ipaddress.ip_address("::ffff:1.2.3.4").packed, 1) == \
        "[::ffff:1.2.3.4]:1"
    # the texts kept for the last few thousand: the same answer from a view, a
    # bytearray, again, and after the cache was emptied; no view kept
    from pcap_tls_split import frame
    buf = bytearray(b"\x0a\x00\x00\x02" * 2)
    assert format_endpoint(memoryview(buf)[4:], 7) == format_endpoint(bytes(buf[:4]), 7) == "10.0.0.2:7"
    assert format_endpoint(buf[:4], 7) == "10.0.0.2:7"
    assert all(k[0].__class__ is bytes for k in frame._ENDPOINTS)
    for port in range(frame.ENDPOINTS_KEPT + 10):
        assert format_endpoint(A4[0], port) == f"10.0.0.2:{port}"
    assert len(frame._ENDPOINTS) <= frame.ENDPOINTS_KEPT
    assert format_endpoint(A6[0], 443) == "[2001:db8::1]:443"
    assert format_endpoint(b"\x01\x02", 9) == "[0102]:9"


# ------------------------------------------------------------------ fixtures vs tshark

# Where tshark's idea of "a TCP segment" differs from ours on purpose:
FIXTURE_EXPECTED_DIFF = {
    # LINKTYPE_USER0 means nothing to either of us; tshark shows it as data (no diff),
    # listed here only if that ever changes
}


def test_fixtures_agree_with_tshark(tmp_path, tshark):
    """Every fixture frame, written to one pcapng (one interface per link type), gives
    the same TCP-or-not verdict and the same innermost 4-tuple in tshark."""
    lts = sorted({c[1] for c in CASES})
    body = shb() + b"".join(idb(lt) for lt in lts)
    for i, (_name, lt, hexstr, _exp) in enumerate(CASES):
        body += epb(lts.index(lt), i * 1000000, h(hexstr))
    path = tmp_path / "fixtures.pcapng"
    path.write_bytes(body)
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-E",
                          "occurrence=l", "-e", "frame.number", "-e", "frame.protocols",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e",
                          "ipv6.dst", "-e", "tcp.srcport", "-e", "tcp.dstport"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(CASES)
    diffs = []
    for (name, lt, hexstr, exp), row in zip(CASES, rows):
        _n, prot, s4, s6, d4, d6, sp, dp = row
        theirs = None
        if "tcp" in prot.split(":"):
            theirs = innermost(prot, s4, d4, s6, d6) + (int(sp), int(dp))
        ours = None
        if exp is not None:
            ours = (str(ipaddress.ip_address(exp[0])), str(ipaddress.ip_address(exp[1])),
                    exp[2], exp[3])
        if (theirs != ours) != (name in FIXTURE_EXPECTED_DIFF):
            diffs.append((name, prot, theirs, ours))
    assert diffs == []


# ------------------------------------------------------------------ corpus vs tshark

def test_corpus_tcp_segments_match_tshark(corpus, tshark):
    """Every frame where tshark sees TCP gives our segment with the same addresses and
    ports; a TCP header quoted in an ICMP error, where tshark gives it a tcp.stream
    number, gives an ICMP_QUOTE segment."""
    ref = tshark_corpus(tshark)
    problems = []
    quotes = 0
    for f in corpus_files():
        rel = str(f.relative_to(CORPUS))
        theirs = {}
        for n, prot, src, dst, sport, dport, numbered in ref[f]:
            layers = prot.split(":")
            if "tcp" not in layers:
                continue
            quoted = "icmp" in layers[:layers.index("tcp")] or "icmpv6" in layers[:layers.index("tcp")]
            if quoted and not numbered:
                continue
            theirs[n] = (src, dst, int(sport), int(dport), quoted)
        ours = {}
        with open_capture(str(f)) as cap:
            for n, _ts, lt, data, orig in cap.frames():
                seg = decode(lt, data, orig)
                if seg is not None:
                    ours[n] = (str(ipaddress.ip_address(seg[0])),
                               str(ipaddress.ip_address(seg[1])), seg[2], seg[3],
                               bool(seg.flags & ICMP_QUOTE))
        quotes += sum(1 for v in ours.values() if v[4])
        if ours != theirs:
            diff = sorted(set(ours.items()) ^ set(theirs.items()))[:5]
            problems.append((rel, len(ours), len(theirs), diff))
    assert problems == []
    assert quotes > 30          # ja4/latest, ja4/ssh2, ndpi/instagram, ndpi/6in4tunnel...
