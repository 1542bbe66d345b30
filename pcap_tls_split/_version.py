"""The version of pcap-tls-split (setup.cfg reads it from here)."""

__version__ = "0.1.0"
