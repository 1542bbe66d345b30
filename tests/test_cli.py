"""The command line: formats, exit status, bad and hostile input."""

import csv
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pcap_tls_split import __version__
from pcap_tls_split.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FIELD_BUG = str(SAMPLES / "field-bug-tls12.pcap")
HEALTHY = str(SAMPLES / "split-header.pcap")

RECORD_KEYS = {"file", "stream", "side", "src", "index", "offset", "type", "version", "length",
               "segments", "header_split", "first_frame", "last_frame", "time"}


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_table_lists_findings_and_summary():
    result = run("analyze", FIELD_BUG)
    assert result.exit_code == 1
    assert "close_before_pending_records" in result.output
    assert "1 TCP connection(s), 1 TLS, 1 flagged" in result.output


def test_json_contract():
    result = run("analyze", "--format", "json", FIELD_BUG)
    report = json.loads(result.output)
    assert report["schema"] == 1 and report["tool"]["name"] == "pcap-tls-split"
    assert set(report) == {"schema", "tool", "inputs", "connections", "summary"}
    assert report["inputs"][0]["format"] == "pcap" and report["inputs"][0]["packets"] > 0
    conn = report["connections"][0]
    for key in ("file", "stream", "client", "server", "role_inferred", "start", "end", "tls_version",
                "sni", "alpn", "cipher", "alerts", "community_id", "records", "close", "quality", "findings"):
        assert key in conn
    assert conn["sni"] == "localhost" and conn["alpn"] is None and conn["alerts"] == []
    assert conn["cipher"] == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert conn["community_id"].startswith("1:") and len(conn["community_id"]) == 30
    assert set(conn["records"]) == {"client", "server"}
    assert {"first_closer", "kind", "time", "reach", "reach_estimated"} <= set(conn["close"])
    assert {"gaps", "retransmissions", "out_of_order", "midstream"} <= set(conn["quality"])
    finding = conn["findings"][0]
    assert set(finding) == {"code", "severity", "confidence", "side", "time", "frame", "message", "evidence",
                            "wireshark_filter"}
    assert finding["wireshark_filter"] == "tcp.stream eq 0 && frame.number >= 11"
    assert report["summary"]["by_code"]["close_before_pending_records"] == 1
    assert conn["close"]["first_closer"] == "client" and conn["close"]["kind"] == "fin"


def test_all_lists_healthy_connections():
    assert json.loads(run("analyze", "--format", "json", HEALTHY).output)["connections"] == []
    listed = json.loads(run("analyze", "--all", "--format", "json", HEALTHY).output)["connections"]
    assert len(listed) == 1 and listed[0]["findings"] == []


def test_jsonl_streams_connections_then_inputs_and_summary():
    lines = run("analyze", "--format", "jsonl", "--all", FIELD_BUG, HEALTHY).stdout.splitlines()
    objects = [json.loads(line) for line in lines]
    assert [("summary" in o) for o in objects] == [False, False, True]
    assert set(objects[-1]) == {"inputs", "summary"}
    assert [i["path"] for i in objects[-1]["inputs"]] == [FIELD_BUG, HEALTHY]
    assert objects[-1]["summary"]["tls_connections"] == 2


def test_csv():
    rows = list(csv.DictReader(io.StringIO(run("analyze", "--format", "csv", FIELD_BUG).stdout)))
    assert {r["code"] for r in rows} >= {"close_before_pending_records", "reset_on_data_after_close"}
    row = rows[0]
    assert row["time_utc"].endswith("Z") and row["time_utc"][10] == "T" and len(row["time_utc"]) == 24
    assert row["sni"] == "localhost" and row["cipher"].startswith("TLS_") and row["community_id"].startswith("1:")
    assert row["wireshark_filter"].startswith("tcp.stream eq 0 && frame.number >= ")


def test_csv_honours_all():
    assert list(csv.DictReader(io.StringIO(run("analyze", "--format", "csv", HEALTHY).stdout))) == []
    rows = list(csv.DictReader(io.StringIO(run("analyze", "--format", "csv", "--all", HEALTHY).stdout)))
    assert len(rows) == 1 and rows[0]["code"] == "" and rows[0]["stream"] == "0"
    assert rows[0]["tls_version"] == "1.2" and rows[0]["wireshark_filter"] == "tcp.stream eq 0"
    both = list(csv.DictReader(io.StringIO(run("analyze", "--format", "csv", "--all", FIELD_BUG, HEALTHY).stdout)))
    assert {r["file"] for r in both} == {FIELD_BUG, HEALTHY}


@pytest.mark.parametrize("fail_on, status", [("high", 1), ("medium", 1), ("low", 1), ("never", 0)])
def test_fail_on(fail_on, status):
    assert run("analyze", "--fail-on", fail_on, FIELD_BUG).exit_code == status


def test_fail_on_counts_only_at_or_above():
    # the healthy capture has nothing at all: 0 even with --fail-on info
    assert run("analyze", "--fail-on", "info", HEALTHY).exit_code == 0


def test_stream_filter():
    path = str(SAMPLES / "field-bug-tries.pcap")
    report = json.loads(run("analyze", "--all", "--format", "json", "--stream", "3", path).output)
    assert [c["stream"] for c in report["connections"]] == [3]


def test_stream_that_matches_nothing_says_so():
    path = str(SAMPLES / "field-bug-tries.pcap")
    result = run("analyze", "--stream", "99", path)
    assert result.exit_code == 0
    assert result.stderr == "pcap-tls-split: --stream 99: no such connection (the input has streams 0 to 9)\n"
    result = run("analyze", "--stream", "0", path)      # a healthy connection: no finding
    assert "--stream 0: no finding there (--all lists it if it is TLS)" in result.stderr
    assert run("analyze", "--stream", "3", path).stderr == ""
    result = run("records", "--stream", "5", HEALTHY)
    assert result.stdout == "" and "--stream 5: no such connection (the input has only stream 0)" in result.stderr


def test_records_json_contract():
    result = run("records", "--format", "json", FIELD_BUG)
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert rows and all(RECORD_KEYS <= set(r) for r in rows)
    server = [r for r in rows if r["side"] == "server"]
    assert [r["index"] for r in server] == list(range(len(server)))
    assert all(r["src"].endswith(":8401") for r in server)
    offsets = [r["offset"] for r in server]
    assert offsets == sorted(offsets)
    for a, b in zip(server, server[1:]):
        assert b["offset"] == a["offset"] + 5 + a["length"]


def test_records_table_and_stream():
    result = run("records", "--stream", "0", FIELD_BUG)
    assert result.exit_code == 0 and "application_data" in result.output


def test_not_a_capture(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello, this is not a capture\n")
    result = run("analyze", "--format", "json", str(bogus), FIELD_BUG)
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["inputs"][0]["errors"] and "notes.txt" in report["inputs"][0]["errors"][0]
    assert report["connections"], "the readable input is still analysed"


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_errors_go_to_stderr_in_every_format(fmt):
    result = run("analyze", "--format", fmt, "/nonexistent/capture.pcap", FIELD_BUG)
    assert result.exit_code == 2
    assert "/nonexistent/capture.pcap: cannot open" in result.stderr
    if fmt in ("table", "csv"):
        assert "cannot open" not in result.stdout
    else:                       # the JSON report carries it too, in inputs[].errors
        inputs = json.loads(result.stdout.splitlines()[-1] if fmt == "jsonl" else result.stdout)["inputs"]
        assert "cannot open" in inputs[0]["errors"][0]
    assert len(result.stderr.splitlines()) == 1
    records = run("records", "--format", fmt, "/nonexistent/capture.pcap")
    assert records.exit_code == 2 and "cannot open" in records.stderr and "cannot open" not in records.stdout


def test_missing_file_in_a_table_run_says_so_on_stderr():
    result = run("analyze", "/nonexistent/capture.pcap")
    assert result.exit_code == 2
    assert result.stderr == "pcap-tls-split: /nonexistent/capture.pcap: cannot open: No such file or directory\n"
    assert "0 TCP connection(s)" in result.stdout


def test_usage_error_is_2():
    assert run("analyze", "--format", "xml", FIELD_BUG).exit_code == 2
    assert run("analyze").exit_code == 2


def test_truncated_capture_is_analysed_up_to_the_cut(tmp_path):
    data = Path(FIELD_BUG).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) - 30])
    result = run("analyze", "--format", "json", "--all", str(cut))
    report = json.loads(result.stdout)
    assert report["inputs"][0]["errors"] and "cut.pcap" in report["inputs"][0]["errors"][0]
    assert report["connections"] and report["inputs"][0]["packets"] > 10
    assert result.exit_code in (0, 1)


def test_a_file_given_twice_is_read_once():
    report = json.loads(run("analyze", "--format", "json", FIELD_BUG, FIELD_BUG, str(SAMPLES)).stdout)
    assert [i["path"] for i in report["inputs"]].count(FIELD_BUG) == 1
    assert len(report["inputs"]) == len(list(SAMPLES.glob("*.pcap*")))


def test_skipped_files_are_named_on_stderr(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "a.pcap").write_bytes(Path(FIELD_BUG).read_bytes())
    result = run("analyze", "--format", "json", str(tmp_path))
    assert result.stderr == f"pcap-tls-split: skipped 1 file(s) in {tmp_path}/, not captures: notes.txt\n"
    assert json.loads(result.stdout)["summary"]["tls_connections"] == 1
    assert run("analyze", "-q", "--format", "json", str(tmp_path)).stderr == ""
    many = run("records", "--format", "json", str(SAMPLES))
    (line,) = many.stderr.splitlines()
    skipped = sum(1 for p in SAMPLES.iterdir() if p.is_file() and p.suffix not in (".pcap", ".pcapng"))
    assert line.startswith(f"pcap-tls-split: skipped {skipped} file(s) in ") and "README.md" in line
    assert line.endswith("more") and len(line) <= 120


def test_a_directory_without_captures_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    result = run("analyze", "-q", str(tmp_path))
    assert result.exit_code == 2 and "no capture to read" in result.stderr


def test_records_piped_into_head_ends_quietly():
    for fmt in ("table", "jsonl", "json", "csv"):
        proc = subprocess.run(f"{sys.executable} -m pcap_tls_split records --format {fmt} "
                              f"{SAMPLES / 'field-bug-70-tries.pcap'} | head -2",
                              shell=True, capture_output=True, text=True, timeout=120,
                              cwd=SAMPLES.parent, executable="/bin/bash")
        assert len(proc.stdout.splitlines()) == 2, fmt
        assert proc.stderr == "", (fmt, proc.stderr)
        status = subprocess.run(f"set -o pipefail; {sys.executable} -m pcap_tls_split records --format {fmt} "
                                f"{SAMPLES / 'field-bug-70-tries.pcap'} | head -1 >/dev/null",
                                shell=True, capture_output=True, text=True, timeout=120,
                                executable="/bin/bash")
        assert status.returncode == 0 and status.stderr == "", fmt


def test_stdin_is_dash_for_every_command():
    data = Path(FIELD_BUG).read_bytes()
    assert "close_before_pending_records" in run("analyze", "-", input=data).stdout
    rows = json.loads(run("records", "--format", "json", "-", input=data).stdout)
    assert rows and {r["file"] for r in rows} == {"-"}


def test_stdin_subprocess_and_module_entry():
    with open(FIELD_BUG, "rb") as f:
        proc = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "-"], stdin=f,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "close_before_pending_records" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "-"], input="garbage",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "not a pcap or pcapng" in proc.stdout + proc.stderr


def test_hostile_captures_never_crash(tmp_path):
    """Flipped bytes, lying lengths, cuts: exit 0, 1 or 2 with a message, never a traceback."""
    rng = random.Random(1234)
    originals = [Path(FIELD_BUG).read_bytes(), (SAMPLES / "half-record.pcap").read_bytes()]
    paths = []
    for i in range(40):
        data = bytearray(rng.choice(originals))
        kind = i % 4
        if kind == 0:  # flip random bytes anywhere
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:  # a lying caplen in a record header
            pos = 24
            for _ in range(rng.randint(0, 10)):
                pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
            if pos + 16 <= len(data):
                data[pos + 8:pos + 12] = rng.choice([0xFFFFFFF0, 70000, 1 << 30]).to_bytes(4, "little")
        elif kind == 2:  # cut anywhere
            data = data[:rng.randrange(len(data))]
        else:  # garbage inside the packets (TCP/TLS headers)
            for _ in range(200):
                data[rng.randrange(40, len(data))] = rng.randrange(256)
        path = tmp_path / f"hostile{i}.pcap"
        path.write_bytes(bytes(data))
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "--format", "json", *paths],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1, 2)
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["inputs"]) == len(paths)
    for inp in report["inputs"]:
        for error in inp["errors"]:
            assert "internal error" not in error, error
            assert "\n" not in error


def test_summary_correlation():
    path = str(SAMPLES / "field-bug-tries.pcap")
    table = run("analyze", path).output
    assert "2 of 10 closed prematurely; all 2 closed right after a segment that ended on a record boundary" in table
    corr = json.loads(run("analyze", "--format", "json", path).output)["summary"]["correlation"]
    assert corr["connections"] == 10
    assert corr["premature"] == {"total": 2, "aligned": 2, "last_record_straddled": 0}
    assert sum(c["connections"] for c in corr["cells"]) == 10


def test_jsonl_streams_connections_while_the_capture_is_still_coming():
    """tcpdump -w - | pcap-tls-split analyze --format jsonl -: lines before the end of input."""
    import select
    data = (SAMPLES / "field-bug-70-tries.pcap").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format",
                             "jsonl", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(data[:len(data) * 2 // 3])
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no connection came out before the end of the input"
        first = json.loads(proc.stdout.readline())
        assert "stream" in first and "summary" not in first
        proc.stdin.write(data[len(data) * 2 // 3:])
        proc.stdin.close()
        rest = proc.stdout.read().decode().splitlines()
        assert json.loads(rest[-1])["summary"]["tls_connections"] == 70
        assert len(rest) == 70  # 69 more connections and the summary
    finally:
        proc.kill()
        proc.wait()


# -- the table: width, confidence, capture quality, severities, -v -------------------------

def widest(text):
    return max((len(line) for line in text.splitlines()), default=0)


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_tables_fit_the_width(width):
    for args in (["analyze", "--all", str(SAMPLES)], ["analyze", "--all", "-v", str(SAMPLES)],
                 ["records", str(SAMPLES)], ["records", FIELD_BUG]):
        result = run(*args, "--width", str(width), "-q")
        assert result.stdout and widest(result.stdout) <= width, (args, widest(result.stdout))


def test_width_in_a_pipe_and_without_limit():
    plain = run("analyze", FIELD_BUG).stdout                  # not a terminal: 120
    assert widest(plain) <= 120
    whole = run("analyze", "--width", "0", FIELD_BUG).stdout   # 0: nothing broken
    message = "still to come (next record frame 15, 300.2 ms after the last)"
    assert message in whole and message not in plain.replace("\n", " ")
    line = next(line for line in whole.splitlines() if "close_before_pending_records" in line)
    assert line.endswith(message) and len(line) > 160


def test_table_groups_findings_under_their_connection():
    out = run("analyze", "--all", FIELD_BUG, HEALTHY).stdout
    lines = out.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("field-bug-tls12.pcap, stream 0: "))
    assert "127.0.0.1:43064 -> 127.0.0.1:8401, TLS 1.2, 2026-" in lines[heading]
    assert lines[heading + 1].split()[:5] == ["16:21:29.675", "13", "client", "high", "close_before_pending_records"]
    assert any(line.startswith("split-header.pcap, stream 0: ") and line.endswith(": no finding") for line in lines)
    # the summary: codes by severity, then count
    summary = lines[lines.index("code                          severity  connections"):][2:5]
    assert [row.split()[:2] for row in summary] == [["close_before_pending_records", "high"],
                                                    ["reset_on_data_after_close", "medium"],
                                                    ["no_close_notify", "low"]]


def _with_a_gap(tmp_path):
    from captures import read_frames, write_pcap
    frames = read_frames(FIELD_BUG)
    path = tmp_path / "gap.pcap"
    write_pcap(path, frames[:5] + frames[6:])     # a client segment the capture missed
    return str(path)


def _midstream(tmp_path):
    from captures import read_frames, write_pcap
    path = tmp_path / "mid.pcap"
    write_pcap(path, read_frames(FIELD_BUG)[3:])   # no SYN, SYN-ACK, ACK
    return str(path)


def test_table_marks_confidence_and_capture_quality(tmp_path):
    gap = _with_a_gap(tmp_path)
    finding = [f for c in json.loads(run("analyze", "--format", "json", gap).stdout)["connections"]
               for f in c["findings"] if f["confidence"] != "high"]
    assert finding and finding[0]["code"] == "no_close_notify"
    out = run("analyze", gap).stdout
    assert "[capture: 1 gap(s)]" in out
    row = next(line for line in out.splitlines() if "no_close_notify" in line)
    assert " low?  " in row
    assert "? after a severity: medium confidence" in out and "-v says why" in out
    verbose = run("analyze", "-v", gap).stdout
    assert "(medium confidence" in verbose
    mid = run("analyze", _midstream(tmp_path)).stdout
    assert "[capture: started mid-stream]" in mid


def test_min_severity_and_verbose(tmp_path):
    path = str(SAMPLES / "fast-close.pcap")
    report = json.loads(run("analyze", "--format", "json", path).stdout)
    everything = {f["code"]: f["severity"] for c in report["connections"] for f in c["findings"]}
    assert "info" in everything.values(), everything
    table = run("analyze", path).stdout
    table = table[:table.index(" TCP connection(s)")]     # the rows, not the summary
    info = [code for code, sev in everything.items() if sev == "info"]
    assert not any(code in table for code in info)
    assert "finding(s) below low not shown (-v or --min-severity info shows them)" in table
    assert all(code in run("analyze", "-v", path).stdout for code in info)
    assert all(code in run("analyze", "--min-severity", "info", path).stdout for code in info)
    # json shows every finding unless told otherwise
    high = json.loads(run("analyze", "--format", "json", "--min-severity", "high", FIELD_BUG).stdout)
    assert [f["code"] for c in high["connections"] for f in c["findings"]] == ["close_before_pending_records"]
    assert high["summary"]["by_code"]["no_close_notify"] == 1       # the summary counts everything
    lines = run("analyze", "--format", "jsonl", "--min-severity", "high", path).stdout.splitlines()
    assert all("findings" not in json.loads(line) or all(f["severity"] == "high" for f in json.loads(line)["findings"])
               for line in lines)
    assert run("analyze", "--min-severity", "bad", path).exit_code == 2


def test_verbose_shows_the_tls_metadata_and_filters():
    out = run("analyze", "-v", FIELD_BUG).stdout
    assert "sni localhost, alpn -, cipher TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, community_id 1:" in out
    assert "filter: tcp.stream eq 0 && frame.number >= 11" in out
    assert "ended 2026-" in out


def test_records_table_has_no_empty_column():
    out = run("records", HEALTHY).stdout
    head, rule = out.splitlines()[:2]
    assert head.split() == ["side", "index", "offset", "type", "version", "length", "frames", "notes"]
    assert len(rule.split()) == len(head.split())
    assert "header split, coalesced" in run("records", str(SAMPLES / "split-header.pcap")).stdout


# -- live sources ------------------------------------------------------------------------

def _first_frames_of_stream_0(path):
    """The capture up to the last frame of its stream 0 (nothing after it)."""
    from captures import read_frames
    from pcap_tls_split.frame import decode
    frames = read_frames(path)
    ports = None
    last = 0
    for i, (_, lt, data, orig) in enumerate(frames):
        seg = decode(lt, data, orig)
        if seg is None:
            continue
        if ports is None:
            ports = {seg.sport, seg.dport}
        if {seg.sport, seg.dport} == ports:
            last = i
    return frames[:last + 1], frames[last + 1:]


def test_a_quiet_pipe_still_gets_its_ended_connections_out(tmp_path):
    """On a live source a connection that has ended comes out within about a second,
    even when no packet comes after it; the rest of the report is as from the file."""
    import select
    import time
    from captures import write_pcap
    path = SAMPLES / "field-bug-70-tries.pcap"
    head, tail = _first_frames_of_stream_0(path)
    assert tail
    write_pcap(tmp_path / "head.pcap", head)
    write_pcap(tmp_path / "all.pcap", head + tail)
    data = (tmp_path / "all.pcap").read_bytes()
    cut = len((tmp_path / "head.pcap").read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format", "jsonl",
                             "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(data[:cut])
        proc.stdin.flush()
        sent = time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        waited = time.monotonic() - sent
        assert ready, "the ended connection did not come out"
        first = json.loads(proc.stdout.readline())
        assert first["stream"] == 0 and waited < 2.5, waited
        proc.stdin.write(data[cut:])
        proc.stdin.close()
        rest = [json.loads(line) for line in proc.stdout.read().decode().splitlines()]
        assert proc.wait(60) == 1
    finally:
        proc.kill()
        proc.wait()
    from_file = [json.loads(line) for line in
                 run("analyze", "--all", "--format", "jsonl", str(tmp_path / "all.pcap")).stdout.splitlines()]
    for line in [first] + rest:
        line.pop("file", None)
        for inp in line.get("inputs", ()):
            inp.pop("path")
    for line in from_file:
        line.pop("file", None)
        for inp in line.get("inputs", ()):
            inp.pop("path")
    assert [first] + rest == from_file


def _live_capture_possible():
    import os
    from conftest import IN_CI
    from pcap_tls_split.api.live import LiveUnavailable, find_capturer
    problem = None
    if os.geteuid() != 0:
        problem = "capturing needs root"
    else:
        try:
            find_capturer()
        except LiveUnavailable as exc:
            problem = str(exc)
    if problem:
        if IN_CI:
            pytest.fail(f"a live capture on lo is required in CI: {problem}")
        pytest.skip(problem)


def _tls_exchange(port):
    """A real TLS connection on loopback (CPython's ssl): request, answer, close_notify both ways."""
    import socket
    import ssl
    import threading
    from pcap_tls_split.lab.peers import bundled_cert_files
    cert, key = bundled_cert_files()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def serve():
        conn, _ = server.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1000)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert tls.recv(1000).startswith(b"HTTP/1.1 200")
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
    thread.join(5)
    server.close()


@pytest.mark.parametrize("capturer", ["tcpdump", "dumpcap"])
def test_live_capture_on_loopback(capturer):
    """analyze -i lo: a real TLS connection's line comes out while the capture runs,
    within about a second of its end; Ctrl-C ends the capture with the summary, and
    the capturer is gone."""
    import os
    import select
    import shutil
    import signal
    import time
    _live_capture_possible()
    exe = shutil.which(capturer) or f"/usr/sbin/{capturer}"
    if not os.access(exe, os.X_OK):
        pytest.skip(f"{capturer} is not installed")
    port = 18000 + os.getpid() % 1000
    env = dict(os.environ, **{f"PCAP_TLS_SPLIT_{capturer.upper()}": exe})
    proc = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "analyze", "-i", "lo", "-f",
                             f"tcp port {port}", "--all", "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(2.5)                   # the capturer is up
        assert proc.poll() is None, proc.stderr.read()
        _tls_exchange(port)
        ended = time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        waited = time.monotonic() - ended
        assert ready, "no line while the capture runs"
        conn = json.loads(proc.stdout.readline())
        assert waited < 2.5, waited
        assert conn["server"] == f"127.0.0.1:{port}" and conn["sni"] == "localhost"
        assert conn["tls_version"] == "1.3" and conn["file"] == "-"
        assert conn["community_id"].startswith("1:")
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "the capturer runs as our child"
        proc.send_signal(signal.SIGINT)    # Ctrl-C
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    last = json.loads(out.decode().splitlines()[-1])
    assert last["summary"]["tls_connections"] == 1 and last["inputs"][0]["path"] == "-"
    assert err.decode() == ""
    for child in children:
        assert not os.path.exists(f"/proc/{child}") or \
            open(f"/proc/{child}/stat").read().split()[2] == "Z", "the capturer is still running"


def test_live_capture_errors_are_one_line(monkeypatch):
    _live_capture_possible()
    result = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", "-i", "nosuch0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "nosuch0" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    usage = run("analyze", "-i", "lo", FIELD_BUG)
    assert usage.exit_code == 2 and "not both" in usage.stderr
    assert run("analyze", "-f", "tcp", FIELD_BUG).exit_code == 2


# -- progress ------------------------------------------------------------------------------

def test_progress_only_on_a_terminal_and_cleared_before_output():
    import os
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "analyze", "--all", str(SAMPLES)],
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    terminal = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    text = terminal.decode()
    assert "MB" in text and "files" in text and "%" in text
    assert text.rstrip("\n").endswith("\r\x1b[K") or text.rsplit("\r\x1b[K", 1)[1].startswith("pcap-tls-split")
    assert "\x1b" not in out and "MB" not in out
    piped = subprocess.run([sys.executable, "-m", "pcap_tls_split", "analyze", str(SAMPLES)],
                           capture_output=True, text=True, timeout=120)
    assert "MB" not in piped.stderr and "\r" not in piped.stderr
