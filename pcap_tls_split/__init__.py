"""pcap-tls-split: locate TLS records against TCP segments and flag premature closes.

    >>> import pcap_tls_split
    >>> report = pcap_tls_split.analyze("field.pcap")
    >>> report.summary.by_code
"""

__version__ = "0.1.0"

from .analyze import analyze, records  # noqa: E402
from .findings import Finding  # noqa: E402
from .report import ConnectionReport, Report  # noqa: E402

__all__ = ["analyze", "records", "Finding", "ConnectionReport", "Report", "__version__"]
