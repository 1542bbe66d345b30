"""Which connections to draw or extract, and their details.

With a stream number, each capture is read once (``detail.collect`` computes the
connection's report itself), so standard input works too. Otherwise the
captures are analysed first (``api.analyze``: the fast loop, in parallel), the
connections with a finding at or above the severity asked for (or with the
code asked for) are picked, and only the files that hold one are read again
for their details.
"""

from typing import NamedTuple

from ..api import analyze, expand_inputs
from ..findings import Severity
from .detail import collect

MAX_DETAILS = 1000      # connections drawn at most in one run (a report says how many were left out)


class Choice(NamedTuple):
    """The connections picked in each capture."""

    files: dict
    """{path: {stream: [ConnectionReport...] or None}} (None: reports are computed
    when the file is read again)."""
    report: object
    """The ``Report`` of the first analysis (None when a stream number was given)."""
    errors: list
    """One line per input that could not be read."""


class StdinTwice(Exception):
    """Standard input cannot be read twice (the message says what to do)."""


def wanted(conn, code=None, min_severity=Severity.MEDIUM):
    """Whether a ``ConnectionReport`` is one to draw or extract."""
    if code is not None:
        return any(f.code == code for f in conn.findings)
    return any(f.severity >= min_severity for f in conn.findings)


def choose(paths, *, stream=None, code=None, min_severity=Severity.MEDIUM, idle_timeout=None,
           jobs=1, dask=None, progress=None):
    """The connections to look at: ``stream`` in each capture, else those with a finding of
    ``code``, else those with a finding at or above ``min_severity``."""
    paths = list(expand_inputs(paths))
    if stream is not None:
        return Choice({path: {stream: None} for path in paths}, None, [])
    if "-" in paths:
        raise StdinTwice("standard input can be read only once, and without --stream the "
                         "captures are read twice (to find the connections, then to draw them): "
                         "give --stream N, or save the capture to a file")
    report = analyze(paths, idle_timeout=idle_timeout, jobs=jobs, dask=dask, progress=progress)
    return choice_of(report, lambda conn: wanted(conn, code, Severity.of(min_severity)))


def choice_of(report, keep=lambda conn: True):
    """The ``Choice`` of the connections of ``report`` that ``keep`` keeps."""
    files = {}
    for conn in report.connections:
        if keep(conn):
            files.setdefault(conn.file, {}).setdefault(conn.stream, []).append(conn)
    errors = [error for inp in report.inputs for error in inp.errors]
    return Choice(files, report, errors)


class Drawn(NamedTuple):
    """The details of the connections chosen."""

    details: list
    """Their ``Detail``s, in file and stream order, at most the limit."""
    left_out: int
    """Connections chosen beyond the limit."""
    errors: list
    """One line per problem reading the files again."""
    unreadable: int
    """Files that could not be read at all."""


def details(choice, idle_timeout=None, limit=MAX_DETAILS, on_frame=None, keep=True, draw=None):
    """The ``Drawn`` details of the connections of a ``Choice``, at most ``limit`` (the
    lowest stream numbers of each file first). ``on_frame``, ``keep``: as
    ``detail.collect`` takes them; ``draw(detail)``: kept instead of each detail, made
    as its connection ends (a picture: the details themselves need not all be held)."""
    out, errors, left_out, unreadable = [], [], 0, 0
    for path, streams in choice.files.items():
        room = limit - len(out)
        if room <= 0:
            left_out += sum(len(v) if v else 1 for v in streams.values())
            continue
        chosen = sorted(streams)[:room]
        left_out += sum(len(streams[s]) if streams[s] else 1 for s in sorted(streams)[room:])
        reports = {s: streams[s] for s in chosen if streams[s]}
        got = collect(path, set(chosen), reports or None, idle_timeout, on_frame, keep, draw)
        unreadable += not got.readable
        if choice.report is None or not got.readable:
            errors += got.errors          # (the first analysis reported them otherwise)
        found = got.details if draw is not None else sorted(got.details, key=lambda det: det.stream)
        out += found[:room]
        left_out += max(0, len(found) - room)
        if choice.report is None and not found and not got.errors:
            for stream in streams:
                errors.append(f"{path}: no TLS connection with tcp.stream {stream}")
    return Drawn(out, left_out, errors, unreadable)
