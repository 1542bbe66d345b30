"""The library API: capture files in, a report out.

``analyze(paths)`` runs the whole path — capture file, frame, TCP segment,
connection, side stream, TLS record, finding — over each input and returns a
``report.Report``. ``records(paths)`` yields every TLS record as it is found.
Inputs are files, directories (searched recursively) or ``-`` for standard
input. Nothing here prints.
"""

import os

from . import fastpath
from . import findings as findings_mod
from . import tls
from .capture import CaptureError, open_capture
from .connection import IDLE_TIMEOUT, ConnectionTable
from .report import (CloseSummary, ConnectionReport, Correlation, InputReport, Quality, RecordRow,
                     RecordStats, Report, Summary, is_premature)


# First bytes of the files a directory walk picks up: pcap (both byte orders,
# micro- and nanosecond), pcapng, gzip.
CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                  b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b")


def _looks_like_capture(path):
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let the reader say what is wrong
    return any(head.startswith(m) for m in CAPTURE_MAGICS)


def expand_inputs(paths):
    """Files to read, in order: ``-`` is stdin; directories are walked (sorted),
    keeping the files that start like a capture (a README beside them is skipped)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        path = os.fspath(path)
        if path != "-" and os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, name) for name in sorted(files)
                          if not name.startswith(".")
                          and _looks_like_capture(os.path.join(root, name))]
            yield from found
        else:
            yield path


def connection_report(path, conn, found):
    """The report of one finished TLS connection."""
    client, server = conn.client, conn.server
    closer = findings_mod.first_closer(conn)
    if closer is not None:
        close = closer.close
        reach = findings_mod.reach_of(closer, conn.peer(closer))
        aligned, straddled = findings_mod.close_position(conn)
        close_summary = CloseSummary(conn.role(closer), close.kind, close.time, reach,
                                     close.reach_estimated, close.frame, aligned, straddled)
    else:
        close_summary = CloseSummary()
    sides = (client, server)
    quality = Quality(
        gaps=sum(s.stream.gaps for s in sides),
        retransmissions=sum(s.stream.retransmissions for s in sides),
        out_of_order=sum(s.stream.out_of_order for s in sides),
        midstream=conn.midstream or any(s.stream.midstream for s in sides),
        conflicts=sum(s.stream.conflicts for s in sides),
        snap_cut=sum(s.stream.snap_cut for s in sides),
        resyncs=sum(s.tracker.desyncs for s in sides if s.tracker is not None))
    version = tls.version_name(conn.version)
    if version is None:
        sslv2 = [s.tracker.sslv2_hello for s in sides if s.tracker is not None and s.tracker.sslv2_hello]
        if sslv2 and sslv2[0] == 0x0002:
            version = "SSLv2"
    return ConnectionReport(
        file=path, stream=conn.stream, client=client.endpoint, server=server.endpoint,
        role_inferred=conn.role_inferred, start=conn.start, end=conn.last,
        tls_version=version,
        records={"client": RecordStats(client.total, client.straddling, client.header_split,
                                       client.coalesced),
                 "server": RecordStats(server.total, server.straddling, server.header_split,
                                       server.coalesced)},
        close=close_summary, quality=quality, findings=tuple(found))


class _FileRun:
    """One input through the path; collects its connections as they end."""

    def __init__(self, path, options, on_connection, on_record):
        self.path = path
        self.options = options
        self.user_on_connection = on_connection
        self.user_on_record = on_record
        self.listed = []
        self.tcp = 0
        self.tls = 0
        self.flagged = 0
        self.by_code = {}
        self.correlation = {}   # (premature, aligned, last_record_straddled) -> connections
        self.errors = []
        self.progress = None    # progress(path, bytes read, size) now and then

    def connection_ended(self, conn):
        if not conn.continued:
            self.tcp += 1  # a connection woken after the idle timeout was counted already
        if not conn.is_tls:
            return
        self.tls += 1
        try:
            found = findings_mod.evaluate(conn)
            report = connection_report(self.path, conn, found)
        except Exception as exc:  # a bug: say so, keep going
            self.errors.append(f"{self.path}: internal error on stream {conn.stream}: "
                               f"{type(exc).__name__}: {exc}")
            return
        if found:
            self.flagged += 1
            for code in {f.code for f in found}:
                self.by_code[code] = self.by_code.get(code, 0) + 1
        close = report.close
        if close.aligned is not None and close.last_record_straddled is not None:
            key = (is_premature(report), close.aligned, close.last_record_straddled)
            self.correlation[key] = self.correlation.get(key, 0) + 1
        stream = self.options.get("stream")
        if stream is not None and conn.stream != stream:
            return
        if not (found or self.options.get("all_connections")):
            return
        self.listed.append(report)
        if self.user_on_connection is not None:
            self.user_on_connection(report)

    def record_found(self, conn, side, record):
        stream = self.options.get("stream")
        if stream is not None and conn.stream != stream:
            return
        self.user_on_record(RecordRow(
            file=self.path, stream=conn.stream, side=conn.role(side), src=side.endpoint,
            index=record.index, offset=record.offset, type=record.type,
            version=tls.version_name(record.version) or "", length=record.length,
            segments=len(record.frames), header_split=record.header_split,
            first_frame=record.first_frame, last_frame=record.last_frame,
            time=record.last_time if record.last_time is not None else 0.0,
            straddling=record.straddling, coalesced=record.coalesced, frames=record.frames,
            complete=record.complete, missing=record.missing))

    def run(self):
        try:
            capture = open_capture(self.path)
        except CaptureError as exc:
            return InputReport(path=self.path, errors=(str(exc),))
        table = ConnectionTable(
            self.connection_ended,
            on_record=self.record_found if self.user_on_record is not None else None,
            idle_timeout=IDLE_TIMEOUT if self.options.get("idle_timeout") is None
            else self.options["idle_timeout"])
        packets = 0
        progress = self.progress
        with capture:
            report = None if progress is None else \
                (lambda: progress(self.path, capture.bytes_read, capture.size))
            try:
                packets = fastpath.run(capture, table, self.errors, self.path, report)
            except Exception as exc:  # a bug: say so, keep what was found
                self.errors.append(f"{self.path}: reading stopped: {type(exc).__name__}: {exc}")
            try:
                table.finish()
            except Exception as exc:
                self.errors.append(f"{self.path}: internal error at the end: {type(exc).__name__}: {exc}")
            errors = list(capture.errors) + self.errors
            return InputReport(path=self.path, format=capture.format, packets=packets,
                               tcp_connections=table.streams, tls_connections=self.tls,
                               errors=tuple(errors))


class ClusterUnavailable(Exception):
    """The Dask scheduler given cannot be used (one line saying why)."""


class FileResult:
    """What one input gave: its InputReport, the connections listed (in the order
    they ended), the records found (when asked for) and the summary counters."""

    def __init__(self, run, inp, records=None):
        self.remote = False          # made in a worker: the callbacks are still to be made
        self.input = inp
        self.listed = run.listed
        self.records = records
        self.tcp, self.tls, self.flagged = run.tcp, run.tls, run.flagged
        self.by_code, self.correlation = run.by_code, run.correlation


def analyze_file(path, options, on_connection=None, on_record=None, keep_records=False,
                 progress=None):
    """One input through the whole path (in this process or a worker)."""
    rows = [] if keep_records else None
    if keep_records:
        on_record = rows.append
    run = _FileRun(path, options, on_connection, on_record)
    run.progress = progress
    return FileResult(run, run.run(), rows)


def _analyze_in_worker(path, options, keep_records):
    result = analyze_file(path, options, keep_records=keep_records)
    result.remote = True
    return result


def _results(paths, options, jobs, dask, on_connection, on_record, progress):
    """FileResults in input order: here, in a process pool, or on a Dask cluster."""
    paths = list(expand_inputs(paths))
    keep = on_record is not None
    parallel = (jobs or 1) > 1 and len(paths) > 1 and "-" not in paths
    if dask:
        try:
            from distributed import Client
            client = Client(dask, timeout="15s")
        except ImportError:
            raise ClusterUnavailable("--dask needs dask distributed: pip install 'pcap-tls-split[dask]'") \
                from None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterUnavailable(f"cannot reach the Dask scheduler at {dask}: {exc}") from None
        with client:
            futures = client.map(_analyze_in_worker, paths, options=options, keep_records=keep, pure=False)
            for path, future in zip(paths, futures):
                yield future.result()
                if progress:
                    progress.file_done(path)
        return
    if not parallel:
        for path in paths:
            result = analyze_file(path, options, on_connection, on_record,
                                  progress=progress.reading if progress else None)
            if progress:
                progress.file_done(path)
            yield result
        return
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        futures = [pool.submit(_analyze_in_worker, path, options, keep) for path in paths]
        for path, future in zip(paths, futures):
            yield future.result()
            if progress:
                progress.file_done(path)


def analyze(paths, *, all_connections=False, stream=None, idle_timeout=None,
            on_connection=None, on_record=None, jobs=1, dask=None, progress=None):
    """Analyse captures and return a ``Report``.

    ``paths``: a path, or a list of them (files, directories, ``-``).
    ``all_connections``: list every TLS connection, not only those with findings.
    ``stream``: list only this ``tcp.stream``.
    ``idle_timeout``: seconds of capture time after which an idle connection is finished.
    ``on_connection(ConnectionReport)``: called as each listed connection ends (streaming).
    ``on_record(RecordRow)``: called for each TLS record as it is found.
    ``jobs``: analyse this many files at once in worker processes (the report, and the
    order of the callbacks, are the same as with one).
    ``dask``: the address of a Dask distributed scheduler to send the files to (its
    workers must see the same paths).
    ``progress``: an object with ``reading(path, done, total)`` and ``file_done(path)``.
    """
    options = {"all_connections": all_connections, "stream": stream, "idle_timeout": idle_timeout}
    inputs, connections = [], []
    tcp = tls_count = flagged = 0
    by_code = {}
    correlation = {}
    for result in _results(paths, options, jobs, dask, on_connection, on_record, progress):
        if result.remote:
            # replay what the worker saw, in the order a single process calls back
            for conn in result.listed if on_connection else ():
                on_connection(conn)
            for row in result.records or ():
                on_record(row)
        inputs.append(result.input)
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


def records(paths, *, stream=None, jobs=1):
    """Every TLS record of the captures, as ``RecordRow``s (a list, in the order found)."""
    rows = []
    analyze(paths, stream=stream, on_record=rows.append, jobs=jobs)
    return rows
