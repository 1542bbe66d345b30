"""Wireshark's view of the same capture: the cross-check, and decryption with a key log.

``verify(paths)`` (``verify.py``) has Wireshark's dissectors (tshark, through
pyshark) read each capture again, only on the TLS connections we found, and
compares per connection and side the record sequence (offset, content type,
length) and the first FIN and RST frames with ours. ``analyze(paths,
keylog=...)`` and ``records(paths, keylog=...)`` (``decrypt.py``) have tshark
decrypt records with an SSLKEYLOGFILE key log and add what they held to the
findings and to the record rows.

Theory of operation
-------------------
Our analysis of a file runs first (``dissect.BridgeRun``: the library's own
per-file run, keeping each TLS connection's per-side facts as it ends). tshark
then reads the same file once (``tshark.py``: the process, its fixed
preferences and environment), and what it reports is placed in our side
streams (``dissect.py``) and compared or decrypted.
"""

from .decrypt import RecordText, analyze, describe, phrase, records, render_records
from .tshark import TsharkFailed, TsharkMissing, find_tshark
from .verify import ConnectionCheck, SideCheck, VerifyReport, difference_text, render_verify, verify

__all__ = ["ConnectionCheck", "RecordText", "SideCheck", "TsharkFailed", "TsharkMissing",
           "VerifyReport", "analyze", "describe", "difference_text", "find_tshark", "phrase", "records",
           "render_records", "render_verify", "verify"]
