"""The version of pcap-tls-split (setup.cfg reads it from here), and how it was built."""

import importlib
import importlib.machinery

__version__ = "0.1.0"

# The modules setup.py compiles where Cython and a C compiler are at hand (those
# with a .pxd beside them); elsewhere they run as the pure Python they are.
ACCELERATED = ("pcap_tls_split.capture.pcap", "pcap_tls_split.capture.pcapng",
               "pcap_tls_split.findings.facts", "pcap_tls_split.findings.frozen",
               "pcap_tls_split.findings.rules", "pcap_tls_split.frame", "pcap_tls_split.loop",
               "pcap_tls_split.report.build", "pcap_tls_split.report.model",
               "pcap_tls_split.report.render", "pcap_tls_split.tcp.connection",
               "pcap_tls_split.tcp.reassembly", "pcap_tls_split.tcp.table",
               "pcap_tls_split.tls.records", "pcap_tls_split.tls.wire")


def compiled():
    """The ``ACCELERATED`` modules that run compiled here (empty: pure Python)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return tuple(name for name in ACCELERATED
                 if (importlib.import_module(name).__file__ or "").endswith(suffixes))


def build():
    """How the package runs here, in words: ``pure Python``, ``compiled: N modules``,
    or which of them are compiled when only some are."""
    done = compiled()
    if not done:
        return "pure Python"
    if len(done) == len(ACCELERATED):
        return f"compiled: {len(done)} modules"
    names = ", ".join(name.split(".", 1)[1] for name in done)
    return f"partly compiled: {names} (of {len(ACCELERATED)})"
