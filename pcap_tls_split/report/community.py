"""The Community ID v1 flow hash, as Zeek and Suricata write it.

Community ID v1 (corelight/community-id-spec): the SHA-1 of seed (2 bytes,
big-endian), source address, destination address (4 or 16 bytes, network
order), IP protocol (1 byte), a zero pad byte, source port, destination port
(2 bytes each, big-endian), base64-encoded with a ``1:`` prefix. The two
endpoints are put in a fixed order first, so that both directions of a flow
hash alike: the smaller address first, or with equal addresses the smaller
port first.
"""

import base64
import hashlib
import struct

TCP = 6


def community_id(saddr, sport, daddr, dport, proto=TCP, seed=0):
    """The Community ID of a flow: addresses as packed bytes (4 or 16), ports as ints."""
    saddr, daddr = bytes(saddr), bytes(daddr)
    if not (saddr < daddr or (saddr == daddr and sport < dport)):
        saddr, sport, daddr, dport = daddr, dport, saddr, sport
    digest = hashlib.sha1(struct.pack("!H", seed) + saddr + daddr
                          + struct.pack("!BBHH", proto, 0, sport, dport)).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")
