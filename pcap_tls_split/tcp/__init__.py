"""TCP segments -> connections -> side streams.

``table.py`` finds each segment's connection and numbers connections as
Wireshark's ``tcp.stream``; ``connection.py`` is one connection, its two sides
and their closes; ``reassembly.py`` is the sans-IO reassembler of one side
stream. A side's bytes go on to its ``tls.RecordTracker``.
"""

from .connection import Close, Connection, Mark, Numbered, SegmentEnd, Side
from .reassembly import Data, Gap, SideStream
from .table import IDLE_TIMEOUT, ConnectionTable, Entry, Tombstone

__all__ = ["Close", "Connection", "ConnectionTable", "Data", "Entry", "Gap", "IDLE_TIMEOUT",
           "Mark", "Numbered", "SegmentEnd", "Side", "SideStream", "Tombstone"]
