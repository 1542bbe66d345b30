"""Many files: worker processes (-j) and a Dask cluster give what one process gives."""

import subprocess
import sys
from pathlib import Path

import pytest

from pcap_tls_split import analyze
from pcap_tls_split.tcp import ConnectionTable

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


def test_idle_connections_are_finished_and_freed():
    """A connection idle past the timeout is finished while the capture goes on."""
    ended = []
    table = ConnectionTable(ended.append, idle_timeout=60)
    a, b = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    table.packet(1, 1000.0, a, b, 40000, 443, 100, 0, 0x02, b"", 0)
    for frame in range(2, 20000):  # other traffic goes on for an hour
        table.packet(frame, 1000.0 + frame * 0.2, a, b, 40001, 443, 5000 + frame, 0, 0x10, b"", 0)
    assert [c.stream for c in ended] == [0]
    assert ended[0].end_reason == "idle"
    assert len({id(entry[0]) for entry in table.by_key.values()}) == 1


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


def test_progress_bar_on_a_terminal_only(monkeypatch):
    from click.testing import CliRunner
    from pcap_tls_split import cli

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = cli.Progress.for_terminal([str(SAMPLES)])
    assert bar is not None and bar.files == len(FILES)
    analyze(FILES, progress=bar)
    bar.close()
    assert f"{len(FILES)}/{len(FILES)} files" in terminal.text
    # in a pipe (CliRunner's stderr is not a terminal) and with -q: never
    monkeypatch.undo()
    assert cli.Progress.for_terminal([str(SAMPLES)]) is None
    result = CliRunner().invoke(cli.main, ["analyze", "-q", str(SAMPLES)])
    assert "files" not in result.output and result.exit_code == 1


def test_a_connection_woken_after_the_idle_timeout_keeps_its_stream_and_roles():
    ended = []
    table = ConnectionTable(ended.append, idle_timeout=60)
    a, b = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    table.packet(1, 1000.0, a, b, 40000, 443, 100, 0, 0x02, b"", 0)          # SYN from the client
    table.packet(2, 1000.1, b, a, 443, 40000, 900, 101, 0x12, b"", 0)        # SYN-ACK
    for frame in range(3, 20000):                                            # other traffic, an hour
        table.packet(frame, 1000.0 + frame * 0.2, a, b, 40001, 443, 5000 + frame, 0, 0x10, b"", 0)
    table.packet(20000, 5000.0, b, a, 443, 40000, 901, 101, 0x10, b"late", 0)  # the server wakes
    table.finish()
    first, woken, other = sorted(ended, key=lambda c: (c.stream, c.continued))
    assert (first.stream, woken.stream, woken.continued) == (0, 0, True)
    assert woken.client.port == 40000 and not woken.role_inferred
    assert table.streams == 2
