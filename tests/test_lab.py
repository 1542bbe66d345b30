"""The lab: every scenario played end to end (server, misbehaving client, capture
on lo, analyzer) gets its expected verdict; ``lab serve`` answers the way it is
told; ``lab list``; the option parsers; the one-line refusal without capture rights.

The end-to-end tests need capture rights (root, or cap_net_raw on tcpdump and
dumpcap). Without them they skip with the reason; in CI (CI=true) they fail.
The scenarios run in parallel threads, each on its own port, so the whole file
takes well under two minutes (the 70-tries scenario, ~30 s, is the longest).
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

import pcap_tls_split
from pcap_tls_split.findings import CODES as FINDING_CODES
from pcap_tls_split.lab import cert as lab_cert
from pcap_tls_split.lab import peers as T
from pcap_tls_split.lab.cli import lab
from pcap_tls_split.lab.capture import Capture, CaptureUnavailable, CheckFailed, read_layout
from pcap_tls_split.lab.scenarios import SCENARIOS, check_report, cli_field, run_scenario

from conftest import IN_CI, ROOT

SIGNATURE_CODES = re.findall(r"^\| `([a-z_]+)` \|", (ROOT.parent / "shared" / "SIGNATURES.md").read_text(),
                             re.M) if (ROOT.parent / "shared" / "SIGNATURES.md").exists() else []
CODES = list(FINDING_CODES)

# Verdicts of the analyzer that differ from SIGNATURES.md (reported; the expectation is not bent).
# strict: when the analyzer is fixed, the XPASS fails and the entry must go.
# e.g. {"scenario": "the analyzer says X where SIGNATURES.md says Y"}
KNOWN_ANALYZER_DEVIATIONS = {}

# every scenario, plus the transport variants
JOBS = [(name, {}) for name in SCENARIOS] + [
    ("split-response-client-drops", {"ipv6": True}),
    ("split-response-client-drops-tls13", {"pcapng": True}),
    ("healthy-tls12", {"ipv6": True, "pcapng": True}),
    ("healthy-tls13", {"nano": True}),
]


def job_id(job):
    name, options = job
    return name + "".join("+" + k for k in sorted(options))


def run_lab(*args, env=None):
    return CliRunner().invoke(lab, list(args), env=env)


# ----------------------------------------------------------------------------- capture rights

_PROBE = {}


def capture_problem():
    """None when tcpdump and dumpcap can capture on lo here, else why not."""
    if "result" not in _PROBE:
        problem = None
        with tempfile.TemporaryDirectory() as tmp:
            for pcapng in (False, True):
                cap = Capture(os.path.join(tmp, "probe.pcapng" if pcapng else "probe.pcap"), 9,
                              pcapng=pcapng, settle=0, drain=0)
                try:
                    cap.start()
                    cap.stop()
                except (CaptureUnavailable, CheckFailed) as e:
                    problem = str(e)
                    break
        _PROBE["result"] = problem
    return _PROBE["result"]


def need_capture():
    problem = capture_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"capturing on lo is required in CI: {problem}")
    pytest.skip(f"cannot capture on lo: {problem}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every job played once, in parallel (longest first); name -> (result or error, log)."""
    need_capture()
    out = tmp_path_factory.mktemp("lab")
    order = sorted(JOBS, key=lambda j: (j[0] != "field-bug-70-tries", j[0] != "field-bug-tries",
                                        j[0] != "straddling-healthy"))

    def play(job):
        name, options = job
        lines = []
        t0 = time.monotonic()
        try:
            res = run_scenario(name, str(out / job_id(job)), log=lines.append, **options)
        except Exception as e:     # reported by the test of this job
            res = e
        lines.append(f"({time.monotonic() - t0:.1f} s)")
        return job_id(job), (res, lines)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(play, order))


# ----------------------------------------------------------------------------- end to end

def _params():
    for job in JOBS:
        reason = KNOWN_ANALYZER_DEVIATIONS.get(job[0])
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(job, id=job_id(job), marks=marks)


@pytest.mark.parametrize("job", list(_params()))
def test_scenario_gets_its_expected_verdict(runs, job):
    res, lines = runs[job_id(job)]
    if isinstance(res, BaseException):
        pytest.fail(f"{job_id(job)}: {type(res).__name__}: {res}\n" + "\n".join(lines[-40:]))
    name, options = job
    suffix = ".pcapng" if options.get("pcapng") else ".pcap"
    assert res.capture.endswith(name + suffix) and os.path.getsize(res.capture) > 24
    with open(res.capture, "rb") as f:
        magic = f.read(4)
    assert magic == (b"\x0a\x0d\x0d\x0a" if options.get("pcapng") else
                     b"\x4d\x3c\xb2\xa1" if options.get("nano") else b"\xd4\xc3\xb2\xa1")
    keys = open(res.keys).read()
    if name not in ("client-closes-during-handshake", "preconnect-abandoned"):   # no secret derived
        assert re.search(r"^(CLIENT_RANDOM|CLIENT_TRAFFIC_SECRET_0) [0-9a-f]{64} ", keys, re.M), "no key log"
    expected = json.loads(open(res.expected_path).read())
    assert expected["scenario"] == name
    assert {"must", "must_not", "may", "must_not_severity_at_or_above", "streams"} <= set(expected)
    if options.get("ipv6"):
        assert all(c.client.endpoint.startswith("[::1]") for c in res.conns)
    assert not res.problems, "\n".join(res.problems + ["--- log:"] + lines[-40:])


def test_field_bug_70_tries_fails_like_the_field_report(runs):
    res, _ = runs["field-bug-70-tries"]
    if isinstance(res, BaseException):
        pytest.fail(str(res))
    assert len(res.conns) == 70
    flagged = [c.stream for c in res.report.connections
               if any(f.code == "close_before_pending_records" and f.severity == "high" for f in c.findings)]
    assert 10 <= len(flagged) <= 14
    assert all(not c.findings for c in res.report.connections if c.stream not in flagged)


def test_lab_run_command(tmp_path):
    need_capture()
    result = run_lab("run", "split-response-client-drops", "--out", str(tmp_path / "repro"), "--ipv6",
                     "--pcapng", "--show")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "verdict: as expected" in out
    assert "close_before_pending_records" in out and "first closer: client fin" in out
    for ext in (".pcapng", ".keys", ".expected.json"):
        assert (tmp_path / "repro" / ("split-response-client-drops" + ext)).is_file()
    assert "tshark -r" in out and "tls.keylog_file:" in out


def test_pcapng_without_dumpcap(tmp_path, monkeypatch):
    """No dumpcap: --pcapng captures with tcpdump and converts."""
    need_capture()
    from pcap_tls_split.lab import capture as lab_capture
    find = lab_capture._find
    monkeypatch.setattr(lab_capture, "_find", lambda tool: None if tool == "dumpcap" else find(tool))
    lines = []
    res = run_scenario("split-response-client-drops", str(tmp_path), pcapng=True, log=lines.append)
    assert any("with tcpdump" in line and "(converted from pcap)" in line for line in lines)
    assert open(res.capture, "rb").read(4) == b"\x0a\x0d\x0d\x0a"
    assert os.listdir(tmp_path) and not [n for n in os.listdir(tmp_path) if n.endswith(".tcpdump.pcap")]
    assert res.report.inputs[0].format == "pcapng" and not res.problems


def test_served_like_the_field_server_the_field_client_fails(tmp_path):
    """`lab serve` with the field report's options, the lab's field client, captured:
    the analyzer finds the field bug."""
    need_capture()
    proc, port = _start_serve("--records", "2", "--pause", "300ms", "--status", "401",
                              "--max-connections", "1")
    path = str(tmp_path / "served.pcap")
    lines = []
    try:
        with Capture(path, port):
            sock = socket.create_connection(("127.0.0.1", port))
            cli_field(expect_complete=False)(T.End(sock, T.client_context("1.2"), False), lines.append)
            assert proc.wait(10) == 0
    finally:
        _stop(proc)
    report = pcap_tls_split.analyze(path, all_connections=True)
    expected = dict(SCENARIOS["split-response-client-drops"].expect, tls_connections=1)
    assert check_report(report, expected) == []
    log = proc.stderr_text
    assert re.search(r"sent \d+ B: send 1/2: record 1\n", log) and re.search(r"send 2/2: record 2\n", log)
    assert "peer FIN (no close_notify)" in log


# ----------------------------------------------------------------------------- serve, no capture needed

class Served:
    """A `lab serve` subprocess and its stderr."""

    def __init__(self, proc):
        self.proc, self.lines, self.port = proc, [], None

    def wait(self, timeout):
        return self.proc.wait(timeout)

    @property
    def stderr_text(self):
        self.reader.join(5)
        return "".join(self.lines)


def _start_serve(*args):
    cmd = [sys.executable, "-c", "import sys; from pcap_tls_split.lab.cli import lab; lab(sys.argv[1:])",
           "serve", "--host", "127.0.0.1", "--port", "0", *args]
    served = Served(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=str(ROOT)))
    proc = served.proc
    deadline = time.monotonic() + 15
    while served.port is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        served.lines.append(line)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            served.port = int(m.group(1))
    if served.port is None:
        proc.kill()
        pytest.fail("lab serve did not start: " + "".join(served.lines) + proc.stderr.read())

    def collect():
        for line in proc.stderr:
            served.lines.append(line)
    served.reader = threading.Thread(target=collect, daemon=True)
    served.reader.start()
    return served, served.port


def _stop(served):
    if served.proc.poll() is None:
        served.proc.kill()
        served.proc.wait()


def _get(port, version=None, path="/"):
    ctx = ssl.create_default_context(cadata=lab_cert.CERT_PEM)
    if version:
        ctx.minimum_version = ctx.maximum_version = T.TLS_VERSIONS[version]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(T.request(path))
            data, times = b"", []
            while not T.http_complete(data):
                d = s.recv(65536)
                if not d:
                    break
                data += d
                times.append(time.monotonic())
            version = s.version()
            s.unwrap()
            return data, times, version


def test_serve_answers_as_told():
    proc, port = _start_serve("--records", "2", "--pause", "300ms", "--status", "401", "--tls", "1.3",
                              "--max-connections", "1")
    try:
        data, times, version = _get(port)
        assert proc.wait(10) == 0
    finally:
        _stop(proc)
    assert version == "TLSv1.3"
    assert data.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and b"WWW-Authenticate" in data
    assert T.http_complete(data) == len(data)
    assert len(times) == 2 and times[1] - times[0] >= 0.25      # head record, pause, body record
    log = proc.stderr_text
    assert "each response: status '401 Unauthorized', 2 record(s), cut records, pause 300ms" in log
    assert "conn#1 127.0.0.1:" in log and "handshake done: TLSv1.3" in log
    assert re.search(r"\+ *\d+\.\dms request: GET / HTTP/1.1", log)
    assert "ended: clean: the peer closed first (close_notify, FIN)" in log
    assert "served 1 connection(s)" in log


def test_serve_cuts_records_and_closes_fast():
    proc, port = _start_serve("--records", "3", "--body-size", "3000", "--cut", "2+2,3+half", "--close", "fast",
                              "--tls", "1.2", "--keylog", os.devnull, "--max-connections", "1")
    try:
        data, _, version = _get(port)
        assert proc.wait(10) == 0
    finally:
        _stop(proc)
    assert version == "TLSv1.2" and T.http_complete(data) == len(data) and b"Connection: close" in data
    log = proc.stderr_text
    assert "send 1/3: record 1 + record 2 bytes 0-1 of " in log and "(inside its header)" in log
    assert re.search(r"send 3/3: record 3 bytes \d+-\d+ of \d+ \+ close_notify \+ FIN \(one segment\)", log)


def test_serve_stops_cleanly_on_ctrl_c():
    proc, port = _start_serve()
    try:
        time.sleep(0.3)
        proc.proc.send_signal(2)   # SIGINT, as Ctrl-C
        assert proc.wait(10) == 0
    finally:
        _stop(proc)
    assert "interrupted: stopping (0 connection(s) served)" in proc.stderr_text
    assert "Traceback" not in proc.stderr_text


@pytest.mark.parametrize("args, message", [
    (["--pause", "3 parsecs"], "not a duration"),
    (["--pause", "300"], "'300' needs a unit: 300ms or 300s?"),
    (["--delay", "2"], "'2' needs a unit"),
    (["--pause", "0,300"], "'300' needs a unit"),
    (["--cut", "0+1"], "not a cut"),
    (["--truncate", "x"], "not a position"),
    (["--status", "OK"], "not an HTTP status"),
    (["--cert", __file__], "--cert and --key go together"),
    (["--body", "x", "--body-size", "3"], "one or the other"),
])
def test_serve_usage_errors(args, message):
    result = run_lab("serve", *args)
    assert result.exit_code == 2
    assert message in result.output


# ----------------------------------------------------------------------------- list, run errors

def test_list_one_line_per_scenario_with_codes():
    result = run_lab("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(SCENARIOS)
    for line, sc in zip(lines, SCENARIOS.values()):
        assert line.startswith(sc.name + " ") and f"TLS {sc.version}" in line
        for f in sc.expect["must"]:
            assert f"{f['code']} {f['side']} {f['severity']}" in line
    data = json.loads(run_lab("list", "--format", "json").output)
    assert [d["name"] for d in data] == list(SCENARIOS)


def test_every_signature_has_a_scenario():
    assert not SIGNATURE_CODES or set(SIGNATURE_CODES) == set(CODES)
    shown = {f["code"] for sc in SCENARIOS.values() for f in sc.expect["must"]}
    assert set(CODES) <= shown
    for code in CODES:     # and a scenario that is its example
        assert any(sc.signature == code for sc in SCENARIOS.values()), code
    healthy = [sc for sc in SCENARIOS.values() if sc.expect["must_not_severity_at_or_above"] == "info"]
    assert len(healthy) >= 3
    assert {"split-response-client-drops", "split-response-client-drops-tls13"} <= set(SCENARIOS)


def test_run_unknown_scenario():
    result = run_lab("run", "no-such-thing")
    assert result.exit_code == 2 and "unknown scenario 'no-such-thing'" in result.output


def test_run_without_tcpdump_says_what_to_install(tmp_path):
    result = run_lab("run", "healthy-tls12", "--out", str(tmp_path), env={"PCAP_TLS_SPLIT_TCPDUMP": "/nonexistent"})
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "tcpdump not found" in result.output and "apt-get install tcpdump" in result.output


def test_run_without_capture_rights_says_so(tmp_path):
    fake = tmp_path / "tcpdump"
    fake.write_text("#!/bin/sh\necho \"tcpdump: lo: You don't have permission to perform this capture on "
                    "that device\" >&2\necho '(socket: Operation not permitted)' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = run_lab("run", "healthy-tls12", "--out", str(tmp_path), "-q",
                     env={"PCAP_TLS_SPLIT_TCPDUMP": str(fake)})
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "not permitted" in result.output and "run as root" in result.output and "cap_net_raw" in result.output


# ----------------------------------------------------------------------------- parsers

@pytest.mark.parametrize("text, seconds", [("300ms", 0.3), ("1.5s", 1.5), ("250us", 0.00025),
                                           ("1m", 60.0), (".5s", 0.5), ("0", 0.0), ("0.0", 0.0),
                                           (2, 2.0), (0.3, 0.3)])
def test_durations(text, seconds):
    assert T.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ms", "-1s", "3 parsecs", "1h", "300", "2", "0.5"])
def test_bad_durations(text):
    """A bare number in text (but 0) is ambiguous: 300 ms or 300 s? It needs its unit."""
    with pytest.raises(ValueError):
        T.parse_duration(text)


def test_cut_points():
    bounds = [(0, 100), (100, 50), (150, 1000)]       # records 1-3
    total = 1150
    assert T.cut_points(T.parse_cut("records"), bounds, total) == [100, 150]
    assert T.cut_points(T.parse_cut("none"), bounds, total) == []
    assert T.cut_points(T.parse_cut("2+2"), bounds, total) == [102]
    assert T.cut_points(T.parse_cut("3+half,2"), bounds, total) == [100, 650]
    assert T.cut_points(T.parse_cut("every:400,@10"), bounds, total) == [10, 400, 800]
    assert T.cut_points(T.parse_cut("9+1"), bounds, total) == []          # no such record
    assert T.describe_span(0, 102, bounds) == "record 1 + record 2 bytes 0-1 of 50 (inside its header)"
    assert T.describe_span(102, 1150, bounds) == "record 3 + record 2 bytes 2-49 of 50"
    assert T.describe_span(0, 150, bounds) == "records 1-2"
    for bad in ("0", "1+x", "every:0", "records,,"):
        with pytest.raises(ValueError):
            T.parse_cut(bad)


def test_plan_records():
    plan = T.ServerPlan(status="401", records=2)
    head, body = plan.response()
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and body.startswith(b"<html>")
    assert len(T.ServerPlan(body=b"x" * 1000, records=5).response()) == 5
    assert [len(r) for r in T.ServerPlan(body=b"x" * 1000, record_size=300).response()[1:]] == [300, 300, 300, 100]
    assert len(T.ServerPlan(body=b"x" * 10, records=1).response()) == 1
    assert T.status_line("404") == "404 Not Found" and T.status_line("299 Odd") == "299 Odd"


def test_bundled_certificate_is_valid_for_a_century():
    cert = ssl._ssl._test_decode_cert(T.bundled_cert_files()[0])
    assert cert["notBefore"].startswith("Jan  1 00:00:00 2000") and "2100" in cert["notAfter"]
    assert ("DNS", "localhost") in cert["subjectAltName"] and ("IP Address", "0:0:0:0:0:0:0:1") in cert["subjectAltName"]


def test_layout_reader_on_the_samples():
    """The lab's own reading of a capture agrees with what expected.json measured."""
    expected = json.loads((ROOT / "samples" / "expected.json").read_text())
    from pcap_tls_split.lab.capture import layout_json
    for name in ("field-bug-tls12.pcap", "half-record.pcap", "clean-tls12-v6.pcapng"):
        conns = read_layout(str(ROOT / "samples" / name))
        assert {str(c.stream): layout_json(c) for c in conns} == \
            {s: v["layout"] for s, v in expected[name]["streams"].items()}
