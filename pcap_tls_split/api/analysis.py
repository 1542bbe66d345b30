"""The library API: ``analyze`` and ``records`` over inputs, the report aggregated."""

import contextlib

from ..capture import CaptureError
from ..report import Correlation, Report, Summary
from .parallel import results

ERRORS = ("raise", "report")


def analyze(paths, *, all_connections=False, stream=None, idle_timeout=None,
            on_connection=None, on_record=None, jobs=1, dask=None, progress=None, fused=True,
            errors="raise", limits=None, keep_connections=True, prepare=None, evaluate=True):
    """Analyse captures and return a ``Report``.

    ``paths``: a path, or a list of them (files, directories, ``-`` for standard
    input); a file named twice (or named and inside a directory named too) is read once.
    ``all_connections``: list every TLS connection, not only those with findings.
    ``stream``: list only this ``tcp.stream``.
    ``idle_timeout``: seconds of capture time after which an idle connection is finished.
    ``on_connection(ConnectionReport)``: called as each listed connection ends (streaming).
    ``on_record(RecordRow)``: called for each TLS record as it is found.
    ``jobs``: analyse this many files at once in worker processes (the report, and the
    order of the callbacks, are the same as with one).
    ``dask``: the address of a Dask distributed scheduler to send the files to (its
    workers must see the same paths).
    ``progress``: an object with ``reading(path, bytes read, size or None, packets)`` and
    ``file_done(path)``.
    ``fused``: the packet loop with the common case fused (the default), else the
    reference loop that takes every packet step by step (the same result, slower).
    ``errors``: what an input that cannot be read as a capture at all does (a missing
    file, one that is not a capture): ``"raise"`` (the default) raises ``CaptureError``
    for the first such input, in input order, once the inputs before it have been read
    (their callbacks made); ``"report"`` reports it in its ``InputReport.errors``
    (``format`` None) and goes on with the others, as the command line does. A capture
    that is readable up to some damage is never an error here: it is analysed up to
    the damage, which is told in its ``errors``.
    ``limits``: bounds on the connection table's state, a dict with any of
    ``max_half_open``, ``max_connections``, ``max_tombstones`` (defaults:
    ``pcap_tls_split.tcp.table.MAX_*``); what a bound lets go is said in the
    input's ``errors``.
    ``keep_connections``: False leaves ``Report.connections`` empty, so that memory
    stays flat however many connections are listed (they reach ``on_connection``
    as they end; the summary counts them all the same).
    ``prepare(ConnectionReport)``: what ``on_connection`` gets instead of each report;
    it is called where the report is made, so with ``jobs`` (or ``dask``) it runs in
    the worker processes and only what it returns comes back to this one (cheaper
    than the report when it is smaller: a line to write, a few fields). It must
    pickle to go to a worker: a module-level function, or a ``functools.partial``
    of one.
    ``evaluate``: False follows the connections for their records only: none is
    evaluated, so there are no findings and none is listed (the summary counts
    the connections, not their findings); ``records`` uses it.

    An exception raised by a callback (``on_connection``, ``on_record``,
    ``prepare``, ``progress``) stops the run and is raised here as it is (from a
    worker process too, when it pickles).
    """
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    options = {"all_connections": all_connections, "stream": stream, "idle_timeout": idle_timeout,
               "fused": fused, "limits": dict(limits or {}), "keep": keep_connections,
               "prepare": prepare if on_connection is not None else None, "evaluate": evaluate}
    inputs, connections = [], []
    tcp = tls_count = flagged = 0
    by_code = {}
    correlation = {}
    # closed when this stops early (an error, a callback's exception): a pool then
    # begins no more files, and ends once those its workers have taken are done
    with contextlib.closing(results(paths, options, jobs, dask, on_connection, on_record,
                                    progress)) as found:
        for result in found:
            if errors == "raise" and result.input.format is None:
                raise CaptureError(result.input.errors[0] if result.input.errors
                                   else f"{result.input.path}: cannot be read")
            if result.remote:
                # replay what the worker saw, in the order a single process calls back
                for conn in result.replay if on_connection else ():
                    on_connection(conn)
                for row in result.records or ():
                    on_record(row)
            inputs.append(result.input)
            if keep_connections:
                connections += sorted(result.listed, key=lambda c: c.stream)
            tcp += result.tcp
            tls_count += result.tls
            flagged += result.flagged
            for code, count in result.by_code.items():
                by_code[code] = by_code.get(code, 0) + count
            for key, count in result.correlation.items():
                correlation[key] = correlation.get(key, 0) + count
    total = Summary(connections=tcp, tls_connections=tls_count, flagged=flagged,
                    by_code=dict(sorted(by_code.items())),
                    correlation=Correlation.from_counts(correlation))
    return Report(inputs=tuple(inputs), connections=tuple(connections), summary=total)


def records(paths, *, stream=None, jobs=1, fused=True, errors="raise"):
    """Every TLS record of the captures, as ``RecordRow``s (a list, in the order found);
    ``errors`` as for ``analyze``."""
    rows = []
    analyze(paths, stream=stream, on_record=rows.append, jobs=jobs, fused=fused, errors=errors,
            evaluate=False)
    return rows
