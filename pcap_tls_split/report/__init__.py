"""Findings -> report: the report's model, how it is built, how it is written.

``model.py`` is what ``pcap_tls_split.analyze`` returns (frozen dataclasses,
``to_dict`` for the JSON contract); ``build.py`` makes a connection's report
from its facts and findings, and a record's row; ``render.py`` generates the
rows once and writes them in each format.
"""

from .build import connection_report, record_row
from .model import (CloseSummary, ConnectionReport, Correlation, InputReport, Quality, RecordRow,
                    RecordStats, Report, Summary, is_premature, to_plain)

__all__ = ["CloseSummary", "ConnectionReport", "Correlation", "InputReport", "Quality", "RecordRow",
           "RecordStats", "Report", "Summary", "connection_report", "is_premature", "record_row",
           "to_plain"]
