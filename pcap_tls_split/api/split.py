"""One capture on several workers: its connections split by ``tcp.table.share_of``.

Each worker process reads the whole capture and analyses its share of the
connections (``ConnectionTable(share=(index, count))``); its table numbers,
bounds and ends every connection as one table alone does, so each listed
connection carries its place in the end order of all (how many connections had
ended, counted by every worker alike). Workers send what they list in batches,
with how far in that order they have got; the parent hands each connection on
once every worker has got past its place, so the callbacks come in the order
one process makes them, as connections end, and nothing is held but what a
slower worker has not caught up with.
"""

import ctypes
import functools
import heapq
import multiprocessing
import os
import pickle
import queue as queues
import signal
import sys
import time as clock

from .run import FileResult, FileRun, sendable

BATCH = 64            # listed connections a worker sends at once...
MARK_EVERY = 2048     # ...or ended connections after which it says how far it has got
WAIT = 1.0            # seconds between looks at whether a silent worker is still alive


def _end_with_parent(parent):
    """A worker ends when its parent does, however the parent ended (killed, out of
    memory): Linux's parent-death signal; elsewhere the parent's own clean-up."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:      # (it ended before the signal was asked for)
        sys.exit(1)


class Unsendable(BaseException):
    """A worker's results cannot go to its parent: the run stops (a BaseException,
    so that the packet loop, which says and steps over the errors of a packet, does
    not take it for one), and the parent says why."""


class _ShareRun(FileRun):
    """A worker's run: what it lists goes to the parent in batches, with its place."""

    def __init__(self, path, options, index, out):
        super().__init__(path, options, on_connection=self._listed)
        self.index = index
        self.out = out
        self.batch = []
        self.marked = 0
        self.sent = False           # a batch was sent (tried in pickle first)

    def _listed(self, item):
        # (the report; or what options["prepare"] made of it, see analyze_split)
        self.batch.append((self.ended, item))

    def connection_ended(self, conn):
        super().connection_ended(conn)
        if len(self.batch) >= BATCH or self.ended - self.marked >= MARK_EVERY:
            self.send(self.ended)

    def send(self, mark):
        if self.batch and not self.sent:
            # the queue pickles in a thread of its own, where a failure is lost: the
            # first batch is tried here, so that the parent is told why
            self.sent = True
            try:
                pickle.dumps(self.batch)
            except Exception as exc:
                raise Unsendable(f"what it lists cannot be sent to the parent (a prepare "
                                 f"whose results do not pickle?): {type(exc).__name__}: {exc}") from None
        self.out.put(("listed", self.index, self.batch, mark))
        self.batch = []
        self.marked = self.ended


def _worker(path, options, index, count, out, parent):
    _end_with_parent(parent)
    try:
        run = _ShareRun(path, dict(options, keep=False, share=(index, count)), index, out)
        if index == 0:              # the parent's progress bar follows the first worker
            run.progress = lambda _, done, size, packets: out.put(("progress", 0, (done, size, packets), None))
        result = FileResult(run, run.run())
        run.send(float("inf"))
        out.put(("done", index, result, None))
    except (Exception, KeyboardInterrupt) as exc:   # a callback's (prepare's): the parent raises it
        out.put(("raised", index, sendable(exc), None))
    except BaseException as exc:  # (a bug, or a signal): the parent says so
        out.put(("failed", index, f"{type(exc).__name__}: {exc}", None))


def _with_report(prepare, report):
    return report, prepare(report)


def _hand_on(item, keep, both, listed, on_connection):
    """A listed connection, in its place: what a worker sent of it (``both``: its
    report and what prepare made of it) to ``listed`` and ``on_connection``."""
    if both:
        report, item = item
        listed.append(report)
    elif keep:
        listed.append(item)
    if on_connection is not None:
        on_connection(item)


def analyze_split(path, options, count, on_connection=None, reading=None):
    """``path`` analysed by ``count`` worker processes; returns its ``FileResult``
    (its ``listed`` only when ``options["keep"]``), ``on_connection`` called as
    connections end, in the order of one process, with each report or what
    ``options["prepare"]`` made of it in the worker; ``reading(path, bytes read,
    size, packets)``: the progress of the first worker."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                          else None)
    out = context.Queue()
    keep = options.get("keep", True)
    # with options["prepare"], a worker sends what it makes of each report (and the
    # report too only when it is kept): on_connection gets that
    prepare = options.get("prepare") if on_connection is not None else None
    both = keep and prepare is not None
    worker_options = dict(options, prepare=functools.partial(_with_report, prepare) if both else prepare)
    workers = [context.Process(target=_worker, args=(path, worker_options, k, count, out, os.getpid()),
                               daemon=True) for k in range(count)]
    for worker in workers:
        worker.start()
    marks = [0] * count
    waiting = []            # heap of (place in the end order, report)
    listed = []
    done = {}
    gone = {}               # worker -> when it was first seen ended
    looked = clock.monotonic()
    try:
        while len(done) < count:
            try:
                kind, index, payload, mark = out.get(timeout=WAIT)
            except queues.Empty:
                kind = None
            now = clock.monotonic()
            if now - looked >= WAIT or kind is None:
                # a worker that is gone without its result (what it sent before it
                # ended is in the pipe: a second look, WAIT later, tells)
                looked = now
                for k, worker in enumerate(workers):
                    if k in done or worker.is_alive():
                        continue
                    if now - gone.setdefault(k, now) >= WAIT:
                        raise RuntimeError(f"{path}: worker {k} of {count} ended "
                                           f"(exit status {worker.exitcode}) without its result")
            if kind is None:
                continue
            if kind == "progress":
                if reading is not None:
                    reading(path, *payload)
                continue
            if kind == "failed":
                raise RuntimeError(f"{path}: worker {index} of {count}: {payload}")
            if kind == "raised":
                raise payload
            if kind == "done":
                done[index] = payload
                continue
            for place, item in payload:
                heapq.heappush(waiting, (place, item))
            marks[index] = mark
            upto = min(marks)
            while waiting and waiting[0][0] <= upto:
                _hand_on(heapq.heappop(waiting)[1], keep, both, listed, on_connection)
    finally:
        for worker in workers:
            worker.join(timeout=WAIT if done else 0)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    while waiting:          # (every worker is done: nothing is still to come)
        _hand_on(heapq.heappop(waiting)[1], keep, both, listed, on_connection)
    return FileResult.merged([done[k] for k in range(count)], listed)
