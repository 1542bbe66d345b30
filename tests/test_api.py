"""The library API (pcap_tls_split/api/): analyze() and records(), several files at once
(worker processes, a Dask cluster), progress."""

import subprocess
import sys
from pathlib import Path

import pytest

from pcap_tls_split import analyze

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


def test_the_reference_loop_gives_the_same_report():
    assert analyze(FILES[:4], all_connections=True, fused=False) == analyze(FILES[:4], all_connections=True)


def test_records_lists_every_record_of_the_stream_asked_for():
    import pcap_tls_split
    path = str(SAMPLES / "field-bug-tls12.pcap")
    rows = pcap_tls_split.records(path)
    assert rows and {r.stream for r in rows} == {0}
    assert pcap_tls_split.records(path, stream=1) == []
    assert [r.index for r in rows if r.side == "server"] == list(range(sum(r.side == "server" for r in rows)))
