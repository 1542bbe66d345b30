"""pcap-tls-split: locate TLS records against TCP segments and flag premature closes.

    >>> import pcap_tls_split
    >>> report = pcap_tls_split.analyze("field.pcap")
    >>> report.summary.by_code
"""

from ._version import __version__
from .api import analyze, records
from .capture import CaptureError
from .findings import CODES, Code, Finding, Severity
from .report import (CloseSummary, ConnectionReport, Correlation, InputReport, Quality, RecordRow,
                     RecordStats, Report, Summary)

__all__ = ["CODES", "CaptureError", "CloseSummary", "Code", "ConnectionReport", "Correlation",
           "Finding", "InputReport", "Quality", "RecordRow", "RecordStats", "Report", "Severity",
           "Summary", "__version__", "analyze", "records"]
