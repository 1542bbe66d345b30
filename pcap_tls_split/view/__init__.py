"""What one looks at and what one sends: pictures of connections, the HTML report,
the extract of the flagged connections, and the tables by server and by client.

These read more of a few connections than the analysis keeps, in a second pass
over the captures that hold them (``detail.py``: every packet and record of the
streams asked for), never in the analysis path. ``select.py`` picks the
connections (a stream, a finding code, a severity); ``ladder.py`` draws one as
text (``words.py``: the words both pictures use).
"""

from . import extract, fleet, html
from .detail import Detail, Omitted, Packet, Piece, collect
from .ladder import ASCII, UNICODE, ladder, legend
from .select import MAX_DETAILS, Choice, Drawn, StdinTwice, choice_of, choose, details, wanted

__all__ = ["extract", "fleet", "html", "ASCII", "Choice", "Detail", "Drawn", "MAX_DETAILS", "Omitted", "Packet", "Piece",
           "StdinTwice", "UNICODE", "choice_of", "choose", "collect", "details", "ladder", "legend",
           "wanted"]
