"""Connection -> findings: the premature-close signatures of SIGNATURES.md.

``codes.py`` is the registry of finding codes and their ``Severity``;
``facts.py`` computes once what the rules read of a finished connection (first
closer, reach, where the close fell, application data, reaction time);
``rules.py`` has one function per code, ``evaluate`` and ``display_filter`` (a
finding's Wireshark filter); ``frozen.py`` the dataclass maker of findings and
reports (frozen, pickled fast).
"""

from .codes import CODES, PREMATURE_CODES, SEVERITIES, Code, Severity
from .facts import Facts
from .frozen import frozen
from .rules import Finding, display_filter, evaluate

__all__ = ["CODES", "PREMATURE_CODES", "SEVERITIES", "Code", "Facts", "Finding", "Severity",
           "display_filter", "evaluate", "frozen"]
