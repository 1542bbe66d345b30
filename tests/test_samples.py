"""The verdicts samples/README.md promises, and that they survive re-capture.

samples/expected.json says per capture which findings must appear (code, side,
severity, evidence), which must not, and from which severity up nothing else
may. The same frames written as pcapng, nanosecond, big-endian, gzip, Linux
cooked or fed through a pipe must give exactly the same verdicts.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import pcap_tls_split
from pcap_tls_split.findings import Severity
from pcap_tls_split.lab.scenarios import _matches  # code, side, severity, evidence subset

import captures

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())


def verdicts(report):
    return sorted((c.stream, f.code, f.side, f.severity) for c in report.connections for f in c.findings)




def test_every_sample_is_listed():
    captured = {p.name for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng", ".gz")}
    assert captured == set(EXPECTED), "samples/expected.json and samples/ disagree"
    readme = (SAMPLES / "README.md").read_text()
    for name in captured:
        assert name in readme, f"{name} is not in samples/README.md"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(name):
    want = EXPECTED[name]
    report = pcap_tls_split.analyze(str(SAMPLES / name), all_connections=True)
    assert not report.inputs[0].errors
    assert report.connections, "no TLS connection found"
    found = [f for c in report.connections for f in c.findings]
    for must in want.get("must", []):
        assert any(_matches(f, must) for f in found), f"missing {must}: found {verdicts(report)}"
    for must_not in want.get("must_not", []):
        assert not any(_matches(f, must_not) for f in found), f"unexpected {must_not}"
    ceiling = want.get("must_not_severity_at_or_above")
    if ceiling:
        allowed = want.get("must", []) + want.get("may", [])
        for f in found:
            if f.severity >= Severity(ceiling):
                assert any(_matches(f, a) for a in allowed), f"unexpected {f.code} {f.severity}"
    for key, value in want.get("summary", {}).items():
        assert getattr(report.summary, key) == value, key


def _variants(tmp_path, source):
    frames = captures.read_frames(source)
    made = {}
    path = tmp_path / "ns.pcap"
    captures.write_pcap(path, frames, nanosecond=True)
    made["nanosecond"] = path
    path = tmp_path / "be.pcap"
    captures.write_pcap(path, frames, big_endian=True)
    made["big-endian"] = path
    path = tmp_path / "x.pcapng"
    captures.write_pcapng(path, frames)
    made["pcapng"] = path
    path = tmp_path / "x.pcap.gz"
    captures.gzip_file(source, path)
    made["gzip"] = path
    if frames and frames[0][1] == captures.ETHERNET:
        for version in (1, 2):
            path = tmp_path / f"sll{version}.pcap"
            captures.write_pcap(path, captures.as_linux_cooked(frames, version))
            made[f"linux-cooked-v{version}"] = path
    return made


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recaptured_sample_keeps_its_verdict(name, tmp_path):
    source = SAMPLES / name
    expected = verdicts(pcap_tls_split.analyze(str(source), all_connections=True))
    for kind, path in _variants(tmp_path, source).items():
        report = pcap_tls_split.analyze(str(path), all_connections=True)
        assert not report.inputs[0].errors, kind
        assert verdicts(report) == expected, kind


def test_through_a_pipe_keeps_the_verdict():
    name = "field-bug-tls12.pcap"
    files = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format", "json",
                            str(SAMPLES / name)], capture_output=True, text=True)
    with open(SAMPLES / name, "rb") as f:
        piped = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format",
                                "json", "-"], stdin=f, capture_output=True, text=True)
    assert files.returncode == piped.returncode == 1, piped.stderr
    a, b = json.loads(files.stdout), json.loads(piped.stdout)
    strip = lambda d: [(c["stream"], [(f["code"], f["side"], f["severity"], f["frame"]) for f in c["findings"]])
                       for c in d["connections"]]
    assert strip(a) == strip(b) and strip(a)
