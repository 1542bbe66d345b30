"""The version of pcap-tls-split (setup.cfg reads it from here), and how it was built."""

import importlib
import importlib.machinery

__version__ = "0.1.0"

# The modules setup.py compiles where Cython and a C compiler are at hand (those
# with a .pxd beside them); elsewhere they run as the pure Python they are.
ACCELERATED = ("pcap_tls_split.loop", "pcap_tls_split.tcp.connection",
               "pcap_tls_split.tcp.reassembly", "pcap_tls_split.tcp.table",
               "pcap_tls_split.tls.records", "pcap_tls_split.tls.wire")


def compiled():
    """The ``ACCELERATED`` modules that run compiled here (empty: pure Python)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return tuple(name for name in ACCELERATED
                 if (importlib.import_module(name).__file__ or "").endswith(suffixes))


def build():
    """How the package runs here, in words: ``pure Python`` or which modules are compiled."""
    done = compiled()
    if not done:
        return "pure Python"
    names = ", ".join(name.split(".", 1)[1] for name in done)
    return f"compiled: {names}" if len(done) == len(ACCELERATED) else f"partly compiled: {names}"
