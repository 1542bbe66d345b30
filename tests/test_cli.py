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
                "records", "close", "quality", "findings"):
        assert key in conn
    assert set(conn["records"]) == {"client", "server"}
    assert {"first_closer", "kind", "time", "reach", "reach_estimated"} <= set(conn["close"])
    assert {"gaps", "retransmissions", "out_of_order", "midstream"} <= set(conn["quality"])
    finding = conn["findings"][0]
    assert set(finding) == {"code", "severity", "confidence", "side", "time", "frame", "message", "evidence"}
    assert report["summary"]["by_code"]["close_before_pending_records"] == 1
    assert conn["close"]["first_closer"] == "client" and conn["close"]["kind"] == "fin"


def test_all_lists_healthy_connections():
    assert json.loads(run("analyze", "--format", "json", HEALTHY).output)["connections"] == []
    listed = json.loads(run("analyze", "--all", "--format", "json", HEALTHY).output)["connections"]
    assert len(listed) == 1 and listed[0]["findings"] == []


def test_jsonl_streams_connections_then_summary():
    lines = run("analyze", "--format", "jsonl", "--all", FIELD_BUG, HEALTHY).output.splitlines()
    objects = [json.loads(line) for line in lines]
    assert [("summary" in o) for o in objects] == [False, False, True]
    assert objects[-1]["summary"]["tls_connections"] == 2


def test_csv():
    rows = list(csv.DictReader(io.StringIO(run("analyze", "--format", "csv", FIELD_BUG).output)))
    assert {r["code"] for r in rows} >= {"close_before_pending_records", "reset_on_data_after_close"}


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


def test_missing_file():
    result = run("analyze", "/nonexistent/capture.pcap")
    assert result.exit_code == 2 and "/nonexistent/capture.pcap" in result.output


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
