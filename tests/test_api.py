"""The library API (pcap_tls_split/api/): analyze() and records(), several files at once
(worker processes, a Dask cluster), progress."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcap_tls_split import CaptureError, analyze, records
from pcap_tls_split.api import expand_inputs

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FILES = sorted(str(p) for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def callbacks(**kwargs):
    seen = []
    report = analyze(FILES, all_connections=True, on_connection=lambda c: seen.append((c.file, c.stream)),
                     **kwargs)
    return report.to_dict(), seen


def test_jobs_give_the_same_report_and_order():
    assert len(FILES) > 3
    assert callbacks(jobs=2) == callbacks(jobs=1)


def test_cli_jobs_output_is_identical():
    outputs = []
    for jobs in ("1", "2"):
        proc = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "-j", jobs, "--all",
                               "--format", "jsonl", str(SAMPLES)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) > len(FILES)


def test_dask_cluster_gives_the_same_report():
    distributed = pytest.importorskip("distributed", reason="dask distributed is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        assert callbacks(dask=cluster.scheduler_address) == callbacks()


class _Terminal:
    """A stderr that says it is a terminal and keeps what is written."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_bar_shows_bytes_of_the_total_then_clears(monkeypatch):
    from pcap_tls_split import cli

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = cli.Progress.for_terminal(FILES)
    assert bar is not None and bar.files == len(FILES) and bar.total == sum(map(os.path.getsize, FILES))
    analyze(FILES, progress=bar)
    assert f"{len(FILES)}/{len(FILES)} files" in terminal.text and " MB" in terminal.text
    assert "100%" in terminal.text
    bar.clear()
    assert terminal.text.endswith("\r\033[K")
    # standard input has no size: packets instead
    stdin_bar = cli.Progress("-".split())
    stdin_bar.reading("-", 0, None, 40000)
    stdin_bar.file_done("-")
    assert "40,000 packets" in terminal.text
    monkeypatch.undo()
    assert cli.Progress.for_terminal(FILES) is None      # stderr is not a terminal: no bar


def test_progress_is_told_packets_as_they_are_read():
    calls = []

    class Recorder:
        def reading(self, path, done, total, packets):
            calls.append((path, done, total, packets))

        def file_done(self, path):
            calls.append((path, "done"))

    path = str(SAMPLES / "field-bug-70-tries.pcap")
    analyze(path, progress=Recorder())
    reading = [c for c in calls if len(c) == 4]
    assert reading and all(c[2] == os.path.getsize(path) and c[3] > 0 for c in reading)
    assert calls[-1] == (path, "done")


def test_the_reference_loop_gives_the_same_report():
    assert analyze(FILES[:4], all_connections=True, fused=False) == analyze(FILES[:4], all_connections=True)


def test_records_lists_every_record_of_the_stream_asked_for():
    import pcap_tls_split
    path = str(SAMPLES / "field-bug-tls12.pcap")
    rows = pcap_tls_split.records(path)
    assert rows and {r.stream for r in rows} == {0}
    assert pcap_tls_split.records(path, stream=1) == []
    assert [r.index for r in rows if r.side == "server"] == list(range(sum(r.side == "server" for r in rows)))


# -- unreadable inputs, inputs named twice, directory walks ------------------------------

def test_an_unreadable_input_raises_unless_errors_report(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a capture\n")
    field = str(SAMPLES / "field-bug-tls12.pcap")
    with pytest.raises(CaptureError, match="/nonexistent.pcap: cannot open"):
        analyze("/nonexistent.pcap")
    seen = []
    with pytest.raises(CaptureError, match="notes.txt: not a pcap or pcapng capture"):
        analyze([field, str(bogus)], on_connection=seen.append)
    assert [c.stream for c in seen] == [0], "the input before the bad one was read"
    with pytest.raises(CaptureError):
        records(str(bogus))
    report = analyze([str(bogus), field], errors="report")
    assert report.inputs[0].format is None and "notes.txt" in report.inputs[0].errors[0]
    assert report.unreadable == [report.inputs[0]] and report.connections
    with pytest.raises(ValueError):
        analyze(field, errors="ignore")


def test_a_cut_capture_is_no_error(tmp_path):
    data = (SAMPLES / "field-bug-tls12.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-30])
    report = analyze(str(cut))
    assert report.inputs[0].errors and report.inputs[0].format == "pcap"


def test_a_file_given_twice_is_read_once(tmp_path):
    field = SAMPLES / "field-bug-tls12.pcap"
    link = tmp_path / "same.pcap"
    link.symlink_to(field)
    paths = [str(field), str(field), str(link), str(SAMPLES), "-", "-"]
    files = list(expand_inputs(paths))
    assert files.count(str(field)) == 1 and str(link) not in files and files.count("-") == 1
    assert len(files) == len(FILES) + 1
    report = analyze([str(field), str(field), str(SAMPLES / "split-header.pcap")])
    assert [i.path for i in report.inputs] == [str(field), str(SAMPLES / "split-header.pcap")]


def test_a_walk_says_which_files_it_skipped():
    skipped = []
    files = list(expand_inputs([str(SAMPLES)], skipped))
    assert files == FILES
    assert str(SAMPLES / "README.md") in skipped and str(SAMPLES / "field-bug-tls12.keys") in skipped
    assert not set(files) & set(skipped)


@pytest.mark.parametrize("jobs", [1, 2])
def test_keep_connections_false_holds_none_and_counts_the_same(jobs):
    kept = analyze(FILES, all_connections=True)
    seen = []
    bare = analyze(FILES, all_connections=True, keep_connections=False, on_connection=seen.append, jobs=jobs)
    assert bare.connections == () and bare.summary == kept.summary and bare.inputs == kept.inputs
    # every listed connection went to the callback, in the order a single process calls back
    assert sorted(seen, key=lambda c: (FILES.index(c.file), c.stream)) == list(kept.connections)


def _place(report, tag="prepared"):
    """A prepare for the tests: a few fields of the report (module level: it pickles)."""
    return tag, report.file, report.stream, len(report.findings)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("keep", [True, False])
def test_prepare_makes_what_on_connection_gets_where_the_report_is_made(jobs, keep, monkeypatch):
    import functools
    import pcap_tls_split.api.parallel as parallel
    seen_reports = []
    kept = analyze(FILES, all_connections=True, on_connection=seen_reports.append)
    expected = [_place(r, "here") for r in seen_reports]
    prepared = []
    report = analyze(FILES, all_connections=True, keep_connections=keep, jobs=jobs,
                     on_connection=prepared.append, prepare=functools.partial(_place, tag="here"))
    assert prepared == expected               # in the order of one process
    assert report.summary == kept.summary
    assert report.connections == (kept.connections if keep else ())
    # one capture split across workers: the same
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    big = str(SAMPLES / "field-bug-70-tries.pcap")     # (70 connections)
    one = []
    alone = analyze(big, all_connections=True, on_connection=one.append)
    split = []
    shared = analyze(big, all_connections=True, keep_connections=keep, jobs=2,
                     on_connection=split.append, prepare=_place)
    assert parallel.splits([big], 2, None)
    assert split == [_place(r) for r in one] and len(split) > 1
    assert shared.connections == (alone.connections if keep else ())
    # and without on_connection, prepare has nothing to do
    assert analyze(FILES, all_connections=True, prepare=_place, jobs=jobs).to_dict() == kept.to_dict()


def test_prepare_runs_in_the_worker_not_here():
    seen = []
    analyze(FILES[:2], all_connections=True, jobs=2, on_connection=seen.append, prepare=_pid)
    assert seen and os.getpid() not in {pid for pid, _ in seen}
    here = []
    analyze(FILES[:2], all_connections=True, on_connection=here.append, prepare=_pid)
    assert {pid for pid, _ in here} == {os.getpid()} and len(here) == len(seen)


def _pid(report):
    return os.getpid(), report.stream


def test_json_written_as_connections_end_is_the_report_in_stream_order():
    """--format json holds no report: the document it writes from its spool is the
    report analyze() returns, connections in input then stream order."""
    import json
    proc = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format", "json",
                           *FILES], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    document = json.loads(proc.stdout)
    assert document == json.loads(json.dumps(analyze(FILES, all_connections=True).to_dict()))
    keys = [(FILES.index(c["file"]), c["stream"]) for c in document["connections"]]
    assert keys == sorted(keys) and len(keys) >= len(FILES)
    # one line per connection (grep finds one), the C encoder's separators
    lines = proc.stdout.splitlines()
    assert sum(1 for line in lines if line.lstrip().startswith('{"file": ')) == len(keys)


def test_the_collector_is_tuned_for_the_run_then_as_it_was():
    import gc
    from pcap_tls_split.api.run import GC_THRESHOLD
    before = gc.get_threshold()
    during = []
    analyze(FILES[:1], all_connections=True, on_connection=lambda c: during.append(gc.get_threshold()))
    assert during and set(during) == {GC_THRESHOLD} != {before}
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_run_leaves_no_reference_cycles(tmp_path):
    """What lets GC_THRESHOLD be high: what a run makes is freed by reference
    counting, nothing of it is left for the collector (the samples, whole and cut
    short, analysed and listed record by record). Other tests' threads may leave
    garbage of their own meanwhile: what counts is what is of this package's."""
    import gc
    cut = tmp_path / "cut.pcap"
    whole = Path(FILES[0]).read_bytes()
    cut.write_bytes(whole[:len(whole) * 2 // 3])
    analyze(FILES[:1])                  # (imports and first-use caches made before)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        report = analyze(FILES + [str(cut)], all_connections=True, errors="report")
        rows = list(records(FILES[:3]))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [type(o).__name__ for o in gc.garbage if _of_package(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert report.connections and rows
    assert any("cut.pcap" in e for i in report.inputs for e in i.errors)
    assert ours == []


def _of_package(obj):
    """An object of a class of pcap_tls_split's, or one of its functions or frames."""
    if type(obj).__module__.startswith("pcap_tls_split"):
        return True
    code = getattr(obj, "__code__", None) or getattr(obj, "f_code", None)
    return code is not None and "pcap_tls_split" in code.co_filename


def test_runs_in_threads_at_once_leave_the_collector_as_it_was():
    import gc
    import threading
    before = gc.get_threshold()
    threads = [threading.Thread(target=analyze, args=(FILES,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_evaluate_false_follows_the_records_only():
    """``evaluate=False`` (what records() and the records command do): the same records,
    the same connections counted, none evaluated nor listed."""
    rows, plain_rows = [], []
    whole = analyze(FILES, all_connections=True, on_record=rows.append)
    bare = analyze(FILES, all_connections=True, on_record=plain_rows.append, evaluate=False,
                   on_connection=lambda c: pytest.fail("a connection listed"))
    assert plain_rows == rows and len(rows) > 1000
    assert records(FILES) == rows
    assert bare.connections == () and bare.summary.flagged == 0 and bare.summary.by_code == {}
    assert (bare.summary.connections, bare.summary.tls_connections) == \
        (whole.summary.connections, whole.summary.tls_connections)
    assert whole.summary.flagged > 10 and bare.inputs == whole.inputs


class Stop(Exception):
    """What a caller's callback raises in the tests below."""


def _fails_third(report, seen=[]):
    """A prepare that raises on its third report (in each process: module level, it pickles)."""
    seen.append(report)
    if len(seen) % 3 == 0:
        raise Stop(f"the caller's own, on stream {report.stream}")
    return report.stream


def _no_internal_errors(report):
    assert not any("internal error" in e for i in report.inputs for e in i.errors)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_callback_s_exception_is_the_caller_s_not_an_internal_error(jobs):
    """An exception raised by on_connection, on_record, prepare or progress stops the
    run and comes out of analyze as it is: it is the caller's, not one of ours to step
    over (an internal error in the input's errors, the run going on without it)."""
    seen = []

    def on_connection(report):
        seen.append(report.stream)
        if len(seen) == 2:
            raise Stop("on_connection")

    with pytest.raises(Stop, match="on_connection"):
        analyze(FILES, all_connections=True, on_connection=on_connection, jobs=jobs)
    assert len(seen) == 2                           # none after the one that raised

    rows = []

    def on_record(row):
        rows.append(row)
        if len(rows) == 5:
            raise Stop("on_record")

    with pytest.raises(Stop, match="on_record"):
        analyze(FILES, on_record=on_record, jobs=jobs)
    assert len(rows) == 5

    with pytest.raises(Stop, match="the caller's own"):   # (with jobs: raised in a worker)
        analyze(FILES, all_connections=True, on_connection=list().append, prepare=_fails_third,
                jobs=jobs)

    class Progress:
        def reading(self, path, done, size, packets):
            raise Stop("progress")

        def file_done(self, path):
            pass

    with pytest.raises(Stop, match="progress"):
        analyze(str(SAMPLES / "field-bug-70-tries.pcap"), progress=Progress(), jobs=jobs)
    # and a callback that does not raise: nothing said of it
    _no_internal_errors(analyze(FILES, all_connections=True, on_connection=list().append, jobs=jobs))


def test_a_callback_s_exception_in_a_split_run_is_the_caller_s(monkeypatch):
    import pcap_tls_split.api.parallel as parallel
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    big = str(SAMPLES / "field-bug-70-tries.pcap")
    assert parallel.splits([big], 2, None)
    with pytest.raises(Stop, match="the caller's own"):       # in a worker
        analyze(big, all_connections=True, on_connection=list().append, prepare=_fails_third, jobs=2)
    with pytest.raises(Stop, match="the caller's own"):       # report kept as well
        analyze(big, all_connections=True, on_connection=list().append, prepare=_fails_third, jobs=2,
                keep_connections=True)
    seen = []

    def on_connection(item):                                   # here
        seen.append(item)
        if len(seen) == 4:
            raise Stop("here")

    with pytest.raises(Stop, match="here"):
        analyze(big, all_connections=True, on_connection=on_connection, prepare=_pid, jobs=2)
    assert len(seen) == 4


def test_file_run_raises_the_callback_s_exception_itself():
    from pcap_tls_split.api import FileRun

    def on_connection(report):
        raise Stop("mine") from KeyError("its cause")

    run = FileRun(str(SAMPLES / "client-rst.pcap"), {"all_connections": True}, on_connection)
    with pytest.raises(Stop) as raised:
        run.run()
    assert isinstance(raised.value.__cause__, KeyError)        # the caller's exception, whole
    assert "CallbackFailed" not in repr(raised.value.__context__)


def test_the_other_runs_callbacks_raise_the_caller_s_exception_too():
    """The Wireshark bridge's run (on_tls) and the detail's collect (on_frame,
    draw) hand a callback's exception on as it is, as analyze does."""
    from pcap_tls_split.view.detail import collect
    from pcap_tls_split.wireshark.dissect import BridgeRun
    path = str(SAMPLES / "field-bug-70-tries.pcap")
    called = []

    def stop(*args):
        called.append(args)
        raise Stop("the caller's")

    with pytest.raises(Stop):
        BridgeRun(path, {}, on_tls=stop).run()
    with pytest.raises(Stop):
        collect(path, set(range(70)), on_frame=stop)
    with pytest.raises(Stop):
        collect(path, set(range(70)), draw=stop)
    assert len(called) == 3                        # each stopped at its first call
    # and without: the same details as before, no errors
    frames = []
    got = collect(path, {3, 4}, on_frame=lambda stream, frame: frames.append(stream))
    assert got.errors == () and sorted(set(frames)) == [3, 4] and len(got.details) == 2


class Unmakeable(Exception):
    """Pickles, but cannot be made again from its pickle (two arguments, one given)."""

    def __init__(self, what, where):
        super().__init__(f"{what} at {where}")


def _fails_unmakeable(report):
    raise Unmakeable("the caller's own", report.stream)


def _said(raised):
    """A worker's Unmakeable as it reached here: itself (where something made it
    picklable whole: dask, once imported, does) or a RuntimeError saying it."""
    error = raised.value
    return isinstance(error, Unmakeable) or str(error).startswith("Unmakeable: ")


def test_a_worker_s_exception_that_cannot_be_sent_whole_is_said(monkeypatch):
    import pickle
    import pcap_tls_split.api.parallel as parallel
    from pcap_tls_split.api.split import sendable
    error = Unmakeable("the caller's own", 3)
    try:
        pickle.loads(pickle.dumps(error))
    except TypeError:
        said = sendable(error)
        assert type(said) is RuntimeError and str(said) == "Unmakeable: the caller's own at 3"
    stop = Stop("whole")
    assert sendable(stop) is stop
    with pytest.raises((RuntimeError, Unmakeable), match="the caller's own at") as raised:     # a pool
        analyze(FILES, all_connections=True, on_connection=list().append, prepare=_fails_unmakeable,
                jobs=2)
    assert _said(raised)
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    with pytest.raises((RuntimeError, Unmakeable), match="the caller's own at") as raised:     # a split
        analyze(str(SAMPLES / "field-bug-70-tries.pcap"), all_connections=True,
                on_connection=list().append, prepare=_fails_unmakeable, jobs=2)
    assert _said(raised)
    with pytest.raises(Unmakeable):                                               # here: itself
        analyze(FILES, all_connections=True, on_connection=list().append, prepare=_fails_unmakeable)
