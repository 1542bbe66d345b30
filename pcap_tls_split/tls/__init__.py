"""Side stream -> TLS records.

``wire.py`` declares the TLS wire format (content types, handshake and alert
codes, the record header) and parses the few contents needed; ``records.py``
is the sans-IO record tracker that cuts one side stream into ``Record``s placed
against the segments that carried them; ``appdata.py`` says which records are
application data. None of them knows TCP: they take bytes and frame numbers.
"""

from .appdata import ApplicationData
from .records import Record, RecordTracker

__all__ = ["ApplicationData", "Record", "RecordTracker"]
