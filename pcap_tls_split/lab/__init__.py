"""The lab: reproduce premature-close bugs on demand, on real sockets.

``peers.py``: TLS ends that decide which bytes go into which TCP send;
``capture.py``: tcpdump or dumpcap on loopback, and a plain reading of the
capture back; ``scenarios.py``: the scenarios and their expected verdicts;
``cli.py``: ``pcap-tls-split lab``; ``cert.py``: the bundled test-only certificate.
"""
