"""One input through the whole path: capture file, frame, TCP segment, connection,
side stream, TLS record, finding, report.

``FileRun(path, options).run()`` opens the capture, runs the packet loop
(``loop.run``) into a connection table, and as each connection ends computes
its facts once (``findings.Facts``), its findings and its report; it counts
what the summary needs and hands listed connections and records to the
caller's callbacks. Nothing here prints.
"""

import dataclasses
import gc
import pickle
import threading
from contextlib import contextmanager

from .. import loop
from ..capture import CaptureError, open_capture
from ..findings import Facts, Severity, evaluate
from ..frame import SUPPORTED_LINKTYPES
from ..report import InputReport, connection_report, is_premature, record_row
from ..tcp import IDLE_TIMEOUT, ConnectionTable


# The collector during a capture's run: the objects made per packet and per record
# (tuples, records, reports) are freed by reference counting, and the few cycles
# (none per packet) can wait; at the default threshold (700) a fleet capture spends
# about a tenth of its time in collections that find nothing. What does outlive a
# collection is the state of the open connections and the tombstones, and each
# young collection walks all of it, long out of the cache: at 50,000 a fleet
# capture (2,000 connections open at once) had two that found nothing and took a
# tenth of its cache misses; at 200,000 it has none, as bulk and field captures
# had none at 50,000. Cyclic garbage, were any made, would wait for at most that
# many allocations. Objects from before the run (imports, the caller's) are
# frozen out of the collections meanwhile.
GC_THRESHOLD = (200_000, 20, 100)


_tuning = threading.Lock()
_tuned = {"runs": 0, "before": None, "frozen": False}   # runs at once (threads), what to restore


@contextmanager
def collector_tuned():
    """The garbage collector tuned while a run is on (the collector is the process's:
    runs in several threads at once tune it once, and the last one out restores it)."""
    with _tuning:
        if not _tuned["runs"]:
            _tuned["before"] = gc.get_threshold()
            _tuned["frozen"] = gc.isenabled()
            if _tuned["frozen"]:
                gc.freeze()
            gc.set_threshold(*GC_THRESHOLD)
        _tuned["runs"] += 1
    try:
        yield
    finally:
        with _tuning:
            _tuned["runs"] -= 1
            if not _tuned["runs"]:
                gc.set_threshold(*_tuned["before"])
                if _tuned["frozen"]:
                    gc.unfreeze()


class CallbackFailed(BaseException):
    """A caller's callback (``on_connection``, ``on_record``, ``prepare``,
    ``progress``) raised ``error``: the run stops, and ``FileRun.run`` raises that
    exception itself. A BaseException, so that the packet loop, which says and
    steps over the errors of a packet (our bugs), does not take it for one of those."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


def call_back(callback, *args):
    """``callback(*args)``, a caller's: what it raises goes as ``CallbackFailed``."""
    try:
        return callback(*args)
    except Exception as exc:
        raise CallbackFailed(exc) from None


def raising_callbacks(function, *args):
    """``function(*args)``, with a ``CallbackFailed`` from inside raised as the
    callback's own exception."""
    try:
        return function(*args)
    except CallbackFailed as failed:
        error = failed.error
    raise error     # (out of the handler: the caller's exception, not ours around it)


def sendable(exc):
    """``exc``, or when it cannot go to another process whole (it does not pickle,
    or cannot be made again from its pickle) a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class FileRun:
    """One input through the path; collects its connections as they end.

    ``options``: ``all_connections``, ``stream``, ``idle_timeout``, ``fused``,
    ``limits`` (as ``pcap_tls_split.analyze`` takes them), ``keep`` (False: the
    listed connections go to ``on_connection`` only, not into ``listed``),
    ``evaluate`` (False: count the connections, evaluate none), ``prepare`` (as
    ``pcap_tls_split.analyze`` takes it),
    ``share`` (``(index, count)``: analyse only that share of the connections,
    ``ConnectionTable``'s; ``ended`` counts the others' ends too, so it is a
    connection's place in the end order of all). Subclasses may look at each
    finished connection in ``connection_ended`` (the Wireshark bridge does)."""

    def __init__(self, path, options, on_connection=None, on_record=None):
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
        self.progress = None    # progress(path, bytes read, size, packets) now and then
        self.ended = 0          # connections ended so far (own and, with a share, the others)

    def connection_ended(self, conn):
        self.ended += 1
        if conn.foreign:
            return              # another worker's (options["share"])
        if not conn.continued:
            self.tcp += 1  # a connection woken after the idle timeout was counted already
        if not conn.is_tls:
            return
        self.tls += 1
        if not self.options.get("evaluate", True):
            return              # (its records only)
        try:
            facts = Facts(conn)
            found = evaluate(facts)
            report = connection_report(self.path, conn, facts, found)
        except Exception as exc:  # a bug: say so, keep going
            self.errors.append(f"{self.path}: internal error on stream {conn.stream}: "
                               f"{type(exc).__name__}: {exc}")
            return
        if found:
            if any(f.severity >= Severity.MEDIUM for f in found):
                self.flagged += 1  # SIGNATURES.md: a finding at or above medium
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
        if self.options.get("keep", True):
            self.listed.append(report)
        if self.user_on_connection is not None:
            prepare = self.options.get("prepare")
            call_back(self.user_on_connection, report if prepare is None else call_back(prepare, report))

    def record_found(self, conn, side, record):
        stream = self.options.get("stream")
        if stream is not None and conn.stream != stream:
            return
        call_back(self.user_on_record, record_row(self.path, conn, side, record))

    def run(self):
        """Read the input; returns its ``InputReport``. An exception a callback
        raised stops the run, and is raised here as it is."""
        return raising_callbacks(self._run)

    def _run(self):
        try:
            capture = open_capture(self.path, SUPPORTED_LINKTYPES)
        except CaptureError as exc:
            return InputReport(path=self.path, errors=(str(exc),))
        idle = self.options.get("idle_timeout")
        table = ConnectionTable(
            self.connection_ended,
            on_record=self.record_found if self.user_on_record is not None else None,
            idle_timeout=IDLE_TIMEOUT if idle is None else idle, share=self.options.get("share"),
            **self.options.get("limits", {}))
        packets = 0
        progress = self.progress
        if capture.live:
            capture.on_quiet(table.quiet)   # a silent pipe: ended connections come out anyway
        with capture:
            report = None if progress is None else \
                (lambda n: call_back(progress, self.path, capture.raw_bytes_read, capture.size, n))
            with collector_tuned():
                try:
                    packets = loop.run(capture, table, self.errors, self.path, report,
                                       fused=self.options.get("fused", True))
                except Exception as exc:  # a bug: say so, keep what was found
                    self.errors.append(f"{self.path}: reading stopped: {type(exc).__name__}: {exc}")
                try:
                    table.finish()
                except Exception as exc:
                    self.errors.append(f"{self.path}: internal error at the end: {type(exc).__name__}: {exc}")
            errors = list(capture.errors) + self.errors + \
                [f"{self.path}: {said}" for said in table.anomalies()]
            return InputReport(path=self.path, format=capture.format, packets=packets,
                               tcp_connections=table.connection_count, tls_connections=self.tls,
                               errors=tuple(errors))


class FileResult:
    """What one input gave: its InputReport, the connections listed (in the order
    they ended), the records found (when asked for) and the summary counters."""

    def __init__(self, run, inp, records=None):
        self.remote = False          # made in a worker: the callbacks are still to be made...
        self.replay = ()             # ... with these (the listed reports, or what prepare made of them)
        self.input = inp
        self.listed = run.listed
        self.records = records
        self.tcp, self.tls, self.flagged = run.tcp, run.tls, run.flagged
        self.by_code, self.correlation = run.by_code, run.correlation

    @classmethod
    def merged(cls, shares, listed):
        """One input's result from its shares (each worker's, ``options["share"]``)
        and the connections ``listed`` in the order they ended: the counters summed,
        the errors each said once (every worker read the whole capture)."""
        first = shares[0]
        merged = cls.__new__(cls)
        merged.remote = False
        merged.replay = ()
        merged.listed = listed
        merged.records = None
        merged.tcp = sum(share.tcp for share in shares)
        merged.tls = sum(share.tls for share in shares)
        merged.flagged = sum(share.flagged for share in shares)
        merged.by_code, merged.correlation = {}, {}
        for share in shares:
            for into, counts in ((merged.by_code, share.by_code), (merged.correlation, share.correlation)):
                for key, count in counts.items():
                    into[key] = into.get(key, 0) + count
        errors = list(first.input.errors)
        for share in shares[1:]:
            errors += [e for e in share.input.errors if e not in errors]
        merged.input = dataclasses.replace(
            first.input, tls_connections=sum(share.input.tls_connections for share in shares),
            errors=tuple(errors))
        return merged


def analyze_file(path, options, on_connection=None, on_record=None, keep_records=False,
                 progress=None):
    """One input through the whole path (in this process or a worker)."""
    rows = [] if keep_records else None
    if keep_records:
        on_record = rows.append
    run = FileRun(path, options, on_connection, on_record)
    run.progress = progress
    return FileResult(run, run.run(), rows)
