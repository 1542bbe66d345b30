"""The finding codes of SIGNATURES.md, declared once, and their severities.

``CODES`` is the one table of codes: each with its default severity, whether
it says a side closed prematurely, and a one-line meaning. The rules, the
report (summary, correlation), the CLI's choices, the README check and the
tests read it from here.
"""

import enum
from typing import NamedTuple


class Severity(str, enum.Enum):
    """How bad a finding is, ordered: ``info < low < medium < high``.

    A ``str`` as well (``Severity.HIGH == "high"``), so it reads and serialises
    as the contract's words; compare severities with ``<``/``>=`` (or
    ``Severity.of(word)``), nowhere else by hand."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self):
        """0 for info ... 3 for high."""
        return _RANK[self]

    @classmethod
    def of(cls, value):
        """The Severity of a word (``"high"``) or of a Severity."""
        return value if isinstance(value, cls) else cls(value)

    # the one place severities are compared (str's own order is alphabetical)
    def __lt__(self, other):
        return self.rank < Severity.of(other).rank

    def __le__(self, other):
        return self.rank <= Severity.of(other).rank

    def __gt__(self, other):
        return self.rank > Severity.of(other).rank

    def __ge__(self, other):
        return self.rank >= Severity.of(other).rank

    def __str__(self):
        return self.value

    __hash__ = str.__hash__


_RANK = {severity: rank for rank, severity in enumerate(Severity)}
SEVERITIES = tuple(s.value for s in Severity)   # ("info", "low", "medium", "high")


class Code(NamedTuple):
    """One finding code of SIGNATURES.md."""

    name: str
    """The code, as in the JSON (``close_before_pending_records``...)."""
    severity: Severity
    """Its severity when nothing lowers it (some codes are ``info`` in harmless cases)."""
    premature: bool
    """It says the closing side closed before it had what the peer was sending."""
    meaning: str
    """What it means on the wire, in one line."""


CODES = {code.name: code for code in (
    Code("close_inside_record", Severity.HIGH, True,
         "the first closer's reach falls inside one of the peer's records: it closed "
         "with part of a record received"),
    Code("close_before_pending_records", Severity.HIGH, True,
         "the reach falls on a record boundary and more (non-alert) peer records "
         "follow it: the field bug"),
    Code("close_before_peer_finished", Severity.MEDIUM, True,
         "reach on a boundary, nothing more from the peer, the closer's request not "
         "answered or still being answered, and the peer answered the close with RST"),
    Code("reset_on_data_after_close", Severity.MEDIUM, False,
         "after a side's FIN, peer application data arrived and that side answered "
         "with RST: the data was lost"),
    Code("close_with_unread_data", Severity.MEDIUM, False,
         "a side sent its FIN, then a RST nothing from the peer provoked: it closed its "
         "socket with data it never read"),
    Code("truncated_record", Severity.HIGH, False,
         "a side's own stream ends inside one of its records at its FIN or RST"),
    Code("close_during_handshake", Severity.MEDIUM, False,
         "a side closed before the TLS handshake completed, without an alert"),
    Code("no_close_notify", Severity.LOW, False,
         "a side closed without a TLS alert first"),
    Code("abortive_close", Severity.LOW, False,
         "a side's first close is a RST"),
    Code("fast_close_after_data", Severity.INFO, False,
         "a side's last records and its FIN came in one segment or back to back"),
    Code("capture_ended_inside_record", Severity.INFO, False,
         "the capture ends inside a record with no close: nothing can be said"),
)}

# Findings that say a side closed before it had what the peer was sending
PREMATURE_CODES = tuple(name for name, code in CODES.items() if code.premature)
