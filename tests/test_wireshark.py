"""verify and --keylog: Wireshark's view of the same captures (tshark through pyshark).

verify must agree with Wireshark on every sample and on every corpus connection
but the ones listed in KNOWN_DIFFERENCES, each with the reason and the
difference it must show (so the list cannot go stale). --keylog must name what
each scenario sent. tshark runs cost ~0.3 s each: the corpus is verified once,
two files at a time, and the per-file tests read that one report.
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pcap_tls_split
from pcap_tls_split import wireshark
from pcap_tls_split.cli import main

from conftest import ROOT, SAMPLES, corpus_files

SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir()
                      if p.suffix in (".pcap", ".pcapng", ".gz") and p.with_suffix(".keys").exists())
FIELD_BUG = {"1.2": SAMPLES / "field-bug-tls12.pcap", "1.3": SAMPLES / "field-bug-tls13.pcap"}
CORPUS_FILES = corpus_files()

# (corpus file name, our stream) -> (why Wireshark and we differ, what must differ:
# "stream" = Wireshark numbers it otherwise, "client"/"server" = that side's records)
KNOWN_DIFFERENCES = {
    ("KakaoTalk_chat.pcap", 2): (
        "two SYN-ACKs with different initial sequence numbers, the second after the client had "
        "acknowledged the first: Wireshark numbers the server's bytes from the second and shows "
        "none of its records; we keep the one the client acknowledged", {"server"}),
    ("tls__tls1.2-late-protocol-error.pcap", 0): (
        "the client's record after its Client Key Exchange has a bogus header (type 20, version "
        "0xffff, length 65281): Wireshark waits for 65281 bytes that never come and dissects no "
        "client record after it; we drop those 6 bytes and resynchronise on the next valid header "
        "(quality.resyncs 1): Finished, two application data records and an alert", {"client"}),
}


def _children_named(name):
    """Processes called ``name`` whose parent is this test process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if comm == name and int(fields[1]) == os.getpid():
            found.append(stat.parent.name)
    return found


@pytest.fixture
def no_stray_tshark():
    yield
    assert not _children_named("tshark"), "a tshark process was left running"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- verify on the samples ---------------------------------------------------------

@functools.lru_cache(maxsize=None)
def samples_report():
    return wireshark.verify([str(p) for p in SAMPLE_FILES], jobs=2)


def test_verify_agrees_on_every_sample(tshark, no_stray_tshark):
    report = samples_report()
    assert [i.path for i in report.inputs] == [str(p) for p in SAMPLE_FILES]
    for inp in report.inputs:
        assert not inp.errors, inp.errors
    compared = {c.file for c in report.connections}
    assert compared == {str(p) for p in SAMPLE_FILES}, "a sample had no TLS connection to compare"
    differing = [(c.file, c.stream, [wireshark.difference_text(s) for s in c.sides])
                 for c in report.connections if not c.agree]
    assert not differing
    for conn in report.connections:
        assert conn.stream == conn.wireshark_stream
        one_sided = conn.file.endswith("one-sided-capture.pcap")    # only the client's packets
        assert all(s.records > 0 for s in conn.sides if not (one_sided and s.side == "server"))


def test_verify_compares_closes_too(tshark):
    report = samples_report()
    (conn,) = [c for c in report.connections if c.file == str(FIELD_BUG["1.2"])]
    client = conn.sides[0]
    assert client.side == "client"
    assert client.fin is not None and client.rst is not None and client.rst > client.fin
    assert (client.fin, client.rst) == (client.wireshark_fin, client.wireshark_rst)


def test_verify_cli_table_json_and_exit_status(tshark, no_stray_tshark):
    result = run("verify", FIELD_BUG["1.2"])
    assert result.exit_code == 0, result.output
    assert "stream 0" in result.output and ": agree" in result.output
    assert "1 TLS connection(s): 1 agree with Wireshark, 0 differ" in result.output
    result = run("verify", "--format", "json", FIELD_BUG["1.2"], FIELD_BUG["1.3"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["summary"] == {"connections": 2, "agree": 2, "differ": 0}
    conn = report["connections"][0]
    assert conn["agree"] and conn["stream"] == conn["wireshark_stream"] == 0
    assert set(conn["sides"]) == {"client", "server"}
    client = conn["sides"]["client"]
    assert client["records"]["ours"] == client["records"]["wireshark"] > 0
    assert client["fin"]["ours"] == client["fin"]["wireshark"] and client["difference"] is None


def test_verify_usage_errors(tshark, tmp_path):
    assert run("verify").exit_code == 2
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    result = run("verify", junk)
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["verify", "-"], input=FIELD_BUG["1.2"].read_bytes())
    assert result.exit_code == 2 and "give a file" in result.output


def test_tshark_timeout_is_reported_and_tshark_is_gone(tshark, no_stray_tshark):
    report = wireshark.verify(str(SAMPLES / "straddling-healthy.pcap"), timeout=0.01)
    (inp,) = report.inputs
    assert any("took longer" in e for e in inp.errors)
    assert report.unreadable and not report.connections


# -- verify on the corpus ----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def corpus_report():
    report = wireshark.verify([str(p) for p in CORPUS_FILES], jobs=2)
    by_file = {}
    for conn in report.connections:
        by_file.setdefault(Path(conn.file).name, []).append(conn)
    return report, by_file


def _differences(conn):
    what = set()
    if conn.stream != conn.wireshark_stream:
        what.add("stream")
    what |= {s.side for s in conn.sides if not s.agree}
    return what


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_verify_agrees_on_the_corpus(path, corpus, tshark):
    report, by_file = corpus_report()
    (inp,) = [i for i in report.inputs if i.path == str(path)]
    assert not [e for e in inp.errors if "tshark" in e], inp.errors
    for conn in by_file.get(path.name, []):
        known = KNOWN_DIFFERENCES.get((path.name, conn.stream))
        found = _differences(conn)
        if known is None:
            assert not found, [wireshark.difference_text(s) for s in conn.sides]
        else:
            assert found == known[1], f"{known[0]}: expected {known[1]} to differ, found {found}"


def test_known_differences_are_in_the_corpus(corpus, tshark):
    _, by_file = corpus_report()
    for name, stream in KNOWN_DIFFERENCES:
        assert any(c.stream == stream for c in by_file.get(name, [])), (name, stream)


def test_verify_table_shows_where_views_differ(corpus, tshark):
    path = corpus / "zeek" / "tls__tls1.2-late-protocol-error.pcap"
    result = run("verify", "--width", "0", path)
    assert result.exit_code == 1
    assert "DIFFER" in result.output
    assert "record #2: ours handshake 32 B at offset 595" in result.output
    assert "Wireshark none" in result.output
    # SOCKS: Wireshark's dissector spends stream numbers, and so do we
    socks = run("verify", "--width", "0", corpus / "ja4" / "socks-https-example.pcap")
    assert socks.exit_code == 0 and "Wireshark: tcp.stream" not in socks.output, socks.output
    narrow = run("verify", "--width", "80", path)
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_verify_differences_shows_only_the_connections_that_differ(corpus, tshark):
    differs = corpus / "zeek" / "tls__tls1.2-late-protocol-error.pcap"
    agrees = FIELD_BUG["1.2"]
    everything = run("verify", agrees, differs)
    assert everything.exit_code == 1 and ": agree" in everything.stdout and "DIFFER" in everything.stdout
    only = run("verify", "--differences", agrees, differs)
    assert only.exit_code == 1
    assert ": agree" not in only.stdout and "DIFFER" in only.stdout and str(agrees) not in only.stdout
    assert "2 TLS connection(s): 1 agree with Wireshark, 1 differ" in only.stdout
    report = json.loads(run("verify", "--differences", "--format", "json", agrees, differs).stdout)
    assert [c["file"] for c in report["connections"]] == [str(differs)]
    assert report["summary"] == {"connections": 2, "agree": 1, "differ": 1}
    clean = run("verify", "--differences", agrees)
    assert clean.exit_code == 0 and "stream" not in clean.stdout


# -- --keylog ----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def field_bug_report(version):
    path = FIELD_BUG[version]
    return wireshark.analyze(str(path), keylog=str(path.with_suffix(".keys")))


@pytest.mark.parametrize("version", sorted(FIELD_BUG))
def test_keylog_names_the_lost_401(version, tshark, no_stray_tshark):
    report = field_bug_report(version)
    assert not report.inputs[0].errors
    (conn,) = report.connections
    assert conn.tls_version == version
    (finding,) = [f for f in conn.findings if f.code == "close_before_pending_records"]
    lost = finding.evidence["app_data"]["first_pending"]
    assert lost["readable"] and lost["content_type"] == "application_data"
    assert (lost["part"], lost["http_message"], lost["http_status"]) == \
        ("body", "HTTP/1.1 401 Unauthorized", 401)
    assert lost["index"] == finding.evidence["first_pending"]["index"]
    assert lost["frame"] == finding.evidence["first_pending"]["frame"]
    received = finding.evidence["app_data"]["last_received"]
    assert received["first_line"] == "HTTP/1.1 401 Unauthorized"
    assert received["part"] == "headers" and received["http_status"] == 401
    assert "; the lost record was the body of HTTP/1.1 401 Unauthorized" in finding.message
    # the reset that lost it says the same
    (reset,) = [f for f in conn.findings if f.code == "reset_on_data_after_close"]
    assert reset.evidence["app_data"]["first_pending"]["part"] == "body"
    # findings without records about them are left as they were
    plain = {(f.code, f.side): f for c in pcap_tls_split.analyze(str(FIELD_BUG[version])).connections
             for f in c.findings}
    for f in conn.findings:
        if "app_data" not in f.evidence:
            assert f == plain[(f.code, f.side)]


def test_keylog_partial_and_post_handshake_records(tshark):
    half = SAMPLES / "half-record.pcap"
    report = wireshark.analyze(str(half), keylog=str(half.with_suffix(".keys")))
    (inside,) = [f for c in report.connections for f in c.findings if f.code == "close_inside_record"]
    partial = inside.evidence["app_data"]["partial"]
    assert partial["http_message"] == "HTTP/1.1 200 OK" and partial["part"] == "whole"
    assert "the record it closed inside was HTTP/1.1 200 OK" in inside.message
    cut = SAMPLES / "client-rst-mid-record.pcap"
    report = wireshark.analyze(str(cut), keylog=str(cut.with_suffix(".keys")))
    (inside,) = [f for c in report.connections for f in c.findings if f.code == "close_inside_record"]
    assert inside.evidence["app_data"]["partial"]["readable"] is False
    assert "never completed" in inside.message
    tickets = SAMPLES / "tls13-preconnect.pcap"
    report = wireshark.analyze(str(tickets), keylog=str(tickets.with_suffix(".keys")))
    (pending,) = [f for c in report.connections for f in c.findings
                  if f.code == "close_before_pending_records"]
    first = pending.evidence["app_data"]["first_pending"]
    assert first["content_type"] == "handshake" and "New Session Ticket" in first["wireshark"]


def test_keylog_that_does_not_fit(tshark):
    path = FIELD_BUG["1.2"]
    report = wireshark.analyze(str(path), keylog=str(FIELD_BUG["1.3"].with_suffix(".keys")))
    (finding,) = [f for c in report.connections for f in c.findings
                  if f.code == "close_before_pending_records"]
    assert finding.evidence["app_data"]["first_pending"]["readable"] is False
    assert "could not decrypt it with this key log" in finding.message


def test_records_keylog_shows_what_every_sample_sent(tshark, no_stray_tshark):
    """Every complete application-data record of every sample decrypts; each client
    starts with its request and each response with its status line."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: wireshark.records(str(p), keylog=str(p.with_suffix(".keys"))),
                                SAMPLE_FILES))
    for path, (texts, inputs) in zip(SAMPLE_FILES, results):
        assert not inputs[0].errors, inputs[0].errors
        if path.name in ("one-sided-capture.pcap", "preconnect-abandoned.pcap"):
            continue          # without the server's hello, or before any secret: nothing to decrypt
        data = [t for t in texts if t.row.complete and t.info.get("content_type") == "application_data"]
        unread = [t for t in texts if t.row.complete and t.row.type == 23 and not t.info["readable"]]
        assert not unread, (path.name, [(t.row.stream, t.row.side, t.row.index) for t in unread])
        for stream in {t.row.stream for t in data}:
            firsts = {}
            for t in sorted(data, key=lambda t: t.row.index):
                if t.row.stream == stream and "first_line" in t.info:
                    firsts.setdefault(t.row.side, t.info["first_line"])
            if "client" in firsts:
                assert firsts["client"].split()[0] in ("GET", "POST", "PUT", "HEAD"), (path.name, firsts)
            if "server" in firsts:
                assert firsts["server"].startswith("HTTP/1.1 "), (path.name, firsts)


def test_records_keylog_cli(tshark):
    path = FIELD_BUG["1.2"]
    result = run("records", "--keylog", path.with_suffix(".keys"), path, "--stream", "0", "--width", "0")
    assert result.exit_code == 0
    header = result.output.splitlines()[0]
    assert header.rstrip().endswith("plaintext")
    assert "GET /api/v1/status HTTP/1.1" in result.output
    assert "HTTP/1.1 401 Unauthorized" in result.output
    assert "(body of HTTP/1.1 401 Unauthorized)" in result.output
    assert "[Handshake Protocol: Client Hello]" in result.output
    rows = json.loads(run("records", "--format", "json", "--keylog", path.with_suffix(".keys"), path).output)
    assert {"plaintext", "app_data"} <= set(rows[0])
    assert [r["plaintext"] for r in rows if r["side"] == "server" and r["type"] == 23][0] == \
        "HTTP/1.1 401 Unauthorized"
    plain = json.loads(run("records", "--format", "json", path).output)
    assert [{k: v for k, v in r.items() if k not in ("plaintext", "app_data")} for r in rows] == plain


def test_analyze_keylog_cli_formats(tshark):
    path = FIELD_BUG["1.3"]
    keys = path.with_suffix(".keys")
    table = run("analyze", "--keylog", keys, path, "--width", "0")
    assert table.exit_code == 1
    assert "the lost record was the body of HTTP/1.1 401 Unauthorized" in table.output
    report = json.loads(run("analyze", "--format", "json", "--keylog", keys, path).output)
    (finding,) = [f for f in report["connections"][0]["findings"] if f["code"] == "close_before_pending_records"]
    assert finding["evidence"]["app_data"]["first_pending"]["http_status"] == 401
    lines = run("analyze", "--format", "jsonl", "--keylog", keys, path).output.splitlines()
    assert "app_data" in lines[0] and "summary" in json.loads(lines[-1])


# -- without tshark ----------------------------------------------------------------

def test_pyshark_is_a_dependency_not_an_extra():
    """pip install pcap-tls-split gives verify and --keylog wherever tshark is."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = cfg["options"]["install_requires"].split()
    assert any(r.startswith("pyshark") for r in required)
    assert "wireshark" not in cfg["options.extras_require"]
    for path in [ROOT / "README.md", *(ROOT / "pcap_tls_split").rglob("*.py")]:
        assert "[wireshark]" not in path.read_text(), path


def test_without_tshark(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # no tshark on it
    with pytest.raises(wireshark.TsharkMissing, match="apt-get install tshark"):
        wireshark.find_tshark()
    result = run("verify", FIELD_BUG["1.2"])
    assert result.exit_code == 2
    assert "tshark" in result.output and "apt-get install tshark" in result.output
    assert len(result.output.strip().splitlines()) == 1
    path = FIELD_BUG["1.2"]
    result = run("analyze", "--keylog", path.with_suffix(".keys"), path)
    assert result.exit_code == 1                            # the findings, as without --keylog
    assert "close_before_pending_records" in result.output
    assert "the plaintext could not be added" in result.output
    result = run("records", "--keylog", path.with_suffix(".keys"), path)
    assert result.exit_code == 0 and "the plaintext could not be added" in result.output
    assert "application_data" in result.output


def test_keylog_must_exist():
    assert run("analyze", "--keylog", "/nonexistent.keys", FIELD_BUG["1.2"]).exit_code == 2


# -- no noise ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["verify", "samples/field-bug-tls13.pcap", "samples/split-header.pcap"],
    ["analyze", "--keylog", "samples/field-bug-tls12.keys", "samples/field-bug-tls12.pcap"],
], ids=["verify", "analyze-keylog"])
def test_nothing_leaks_on_the_terminal(args, tshark):
    """pyshark's event loop, subprocess and cleanup stay silent, even in Python's
    development mode with warnings as errors, and leave no tshark behind."""
    # (DeprecationWarnings aside: click deprecates what cli.py uses, not our concern here)
    proc = subprocess.run([sys.executable, "-X", "dev", "-W", "error", "-W", "ignore::DeprecationWarning",
                           "-m", "pcap_tls_split"] + args,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stderr == ""
    assert proc.stdout
