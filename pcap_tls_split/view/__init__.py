"""What one looks at and what one sends: pictures of connections, the HTML report,
the extract of the flagged connections, and the tables by server and by client.

These need more of a few connections than the analysis keeps, and read it in a
second pass over the captures that hold them (``detail.py``: every packet and
record of the streams asked for), never in the analysis path. ``select.py``
picks the connections (a stream, a finding code, a severity); ``ladder.py``
draws one as text and ``svg.py`` as a picture (``words.py``: the words both
use); ``html.py`` is the HTML report; ``extract.py`` writes the pcapng of a bug
report; ``fleet.py`` sums connections up by server and by client (in one pass
of its own, over the records as they are found).
"""

from . import detail, extract, fleet, html, ladder, select, svg, words
from .ladder import ASCII, UNICODE
from .select import StdinTwice, choose, details

__all__ = ["ASCII", "StdinTwice", "UNICODE", "choose", "detail", "details", "extract", "fleet", "html",
           "ladder", "select", "svg", "words"]
