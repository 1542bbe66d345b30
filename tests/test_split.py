"""One capture on several workers (``-j`` on a single file, pcap_tls_split/api/parallel.py):
each worker reads the whole capture and analyses its share of the connections
(``ConnectionTable(share=...)``: the others are ``tcp.Numbered``); the report and
the order of the callbacks are those of one process."""

import subprocess
import sys

import pytest

import pcap_tls_split.api.parallel as parallel
from conftest import SAMPLES, corpus_files
from pcap_tls_split import analyze
from pcap_tls_split.tcp import ConnectionTable
from pcap_tls_split.tcp.table import share_of

SAMPLE_FILES = sorted(str(p) for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))
# the corpus captures with the most to split (the largest), and every sample
CORPUS_FILES = [str(p) for p in sorted(corpus_files(), key=lambda p: -p.stat().st_size)[:12]]


def _both(path, monkeypatch, jobs=2):
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    alone, split = [], []
    one = analyze(path, all_connections=True, on_connection=alone.append)
    assert parallel.splits([path], jobs, None)
    shared = analyze(path, all_connections=True, on_connection=split.append, jobs=jobs)
    return (one.to_dict(), alone), (shared.to_dict(), split)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_a_sample_split_across_workers_gives_the_same_report_and_order(path, monkeypatch):
    one, split = _both(path, monkeypatch)
    assert split == one


@pytest.mark.parametrize("jobs", [2, 3])
def test_corpus_captures_split_across_workers_give_the_same_report_and_order(corpus, jobs, monkeypatch):
    assert CORPUS_FILES
    listed = 0
    for path in CORPUS_FILES:
        one, split = _both(path, monkeypatch, jobs)
        assert split == one, path
        listed += len(one[1])
    assert listed > 50          # (the largest captures have connections to split)


def test_each_connection_has_one_worker_whoever_asks():
    a, b = bytes((10, 0, 0, 1)), bytes((192, 0, 2, 7))
    shares = {share_of(a, 40000 + n, b, 443, 2) for n in range(200)}
    assert shares == {0, 1}     # both get some
    assert all(share_of(a, p, b, 443, 3) == share_of(b, 443, a, p, 3) for p in range(40000, 40200))
    # the same in another process (Python's hash of bytes is salted per process)
    code = ("from pcap_tls_split.tcp.table import share_of;"
            "print([share_of(bytes((10,0,0,1)), p, bytes((192,0,2,7)), 443, 5) for p in range(40000, 40050)])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"})
    assert other.stdout.strip() == str([share_of(a, p, b, 443, 5) for p in range(40000, 40050)])


def test_a_share_numbers_and_ends_the_others_as_one_table_does():
    from test_floods import SERVER_ADDR, addr
    from pcap_tls_split.frame import ACK, FIN, SYN

    def run(share):
        ended = []
        table = ConnectionTable(ended.append, share=share)
        for n in range(40):
            t = 1.0 + n
            table.packet(4 * n + 1, t, addr(n), SERVER_ADDR, 40000, 443, n, 0, SYN, b"", 0)
            table.packet(4 * n + 2, t, SERVER_ADDR, addr(n), 443, 40000, 7, n + 1, SYN | ACK, b"", 0)
            table.packet(4 * n + 3, t, addr(n), SERVER_ADDR, 40000, 443, n + 1, 8, FIN | ACK, b"", 0)
            table.packet(4 * n + 4, t, SERVER_ADDR, addr(n), 443, 40000, 8, n + 2, FIN | ACK, b"", 0)
        table.finish()
        return [(c.stream, c.end_reason, c.foreign) for c in ended]

    alone = run(None)
    halves = run((0, 2)), run((1, 2))
    assert [s[:2] for s in halves[0]] == [s[:2] for s in halves[1]] == [s[:2] for s in alone]
    own = [[s[0] for s in half if not s[2]] for half in halves]
    assert own[0] and own[1] and sorted(own[0] + own[1]) == [s[0] for s in alone]


def test_splitting_is_for_one_large_regular_file(tmp_path, monkeypatch):
    big = tmp_path / "big.pcap"
    big.write_bytes(b"\0" * 64)
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 64)
    assert parallel.splits([str(big)], 2, None)
    assert not parallel.splits([str(big)], 1, None)                 # -j 1
    assert not parallel.splits([str(big), str(big)], 2, None)       # several files: one each
    assert not parallel.splits(["-"], 2, None)                      # standard input
    assert not parallel.splits([str(big)], 2, print)                # records: not split
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 65)
    assert not parallel.splits([str(big)], 2, None)                 # too small to pay


def test_a_split_run_hands_connections_on_as_they_end_holding_none(corpus, monkeypatch):
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    alone, split = [], []
    for path in CORPUS_FILES:
        analyze(path, all_connections=True, on_connection=alone.append)
        report = analyze(path, all_connections=True, on_connection=split.append, jobs=2,
                         keep_connections=False)
        assert report.connections == ()
    assert split == alone and len(alone) > 50


def test_a_worker_that_dies_is_said_not_waited_for(monkeypatch, tmp_path):
    import os
    from pcap_tls_split.api import split as split_module
    monkeypatch.setattr(split_module, "_worker", lambda *args: os._exit(3))
    with pytest.raises(RuntimeError, match="worker 0 of 2 ended .exit status 3. without its result"):
        split_module.analyze_split(SAMPLE_FILES[0], {}, 2)


def test_the_command_line_splits_one_capture_only_when_j_is_given(tmp_path):
    import os
    from pcap_tls_split.cli import Session
    one, two = SAMPLE_FILES[:2]
    for jobs, paths, expected in ((None, [one], 1), (2, [one], 2), (None, [one, two], os.cpu_count() or 1),
                                  (3, [one, two], 3)):
        session = Session(quiet=True, jobs=jobs, dask=None, width=None)
        session.inputs(paths)
        assert session.scale["jobs"] == expected, (jobs, paths)


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """The parent killed outright (SIGKILL: no clean-up of its own runs): its workers
    do not stay behind holding the output open."""
    import os
    import signal
    import time
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "import pcap_tls_split.api.split as split\n"
        "def worker(*args):\n"
        "    split._end_with_parent(args[-1])\n"
        "    time.sleep(120)\n"
        "split._worker = worker\n"
        f"split.analyze_split({SAMPLE_FILES[0]!r}, {{}}, 2)\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 30
        children = []
        while len(children) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            with open(f"/proc/{parent.pid}/task/{parent.pid}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        assert len(children) == 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in children if os.path.exists(f"/proc/{pid}")
                and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        assert not left
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_split_run_shows_the_progress_of_its_first_worker(corpus, monkeypatch):
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    path = CORPUS_FILES[0]          # (the largest: thousands of packets)
    told = []

    class Progress:
        def reading(self, *args):
            told.append(args)

        def file_done(self, path):
            told.append(("done", path))

    analyze(path, jobs=2, progress=Progress())
    assert told[-1] == ("done", path) and len(told) >= 2
    assert all(entry[0] == path and entry[1] > 0 for entry in told[:-1])


def test_a_share_counts_half_open_connections_as_one_table_does():
    """A connection whose only payload is held out of order is no longer half-open,
    whether this worker analyses it or not (the half-open bound then lets the same go)."""
    from test_floods import SERVER_ADDR, addr
    from pcap_tls_split.frame import ACK, SYN

    def run(share):
        ended = []
        table = ConnectionTable(ended.append, share=share, max_half_open=20)
        for n in range(60):
            table.packet(2 * n + 1, 1.0, addr(n), SERVER_ADDR, 40000, 443, n, 0, SYN, b"", 0)
            if n % 2:     # 50 bytes missing before it: held, never delivered
                table.packet(2 * n + 2, 1.0, addr(n), SERVER_ADDR, 40000, 443, n + 51, 1, ACK, b"x" * 10, 0)
        evictions = dict(table.evictions)
        table.finish()
        return evictions, [(c.stream, c.end_reason) for c in ended]

    alone = run(None)
    assert alone[0]["half_open"] > 0
    assert run((0, 2)) == run((1, 2)) == alone


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def _unpicklable(report):
    return _Unpicklable()


def test_a_split_whose_results_do_not_pickle_says_why(monkeypatch):
    """The queue pickles in a thread of its own, where a failure would be lost (the
    parent would only see a worker gone): the first batch is tried first."""
    import time
    monkeypatch.setattr(parallel, "SPLIT_LEAST", 0)
    path = str(SAMPLES / "field-bug-70-tries.pcap")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="cannot be sent to the parent.*cannot pickle this"):
        analyze(path, jobs=2, on_connection=lambda shown: None, prepare=_unpicklable,
                keep_connections=False)
    assert time.monotonic() - start < 30
