"""extract: the flagged connections as one pcapng, read back by tshark (streams, comments,
decryption from the file alone) and by our own reader."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import pcap_tls_split
from pcap_tls_split.capture import open_capture
from pcap_tls_split.capture.formats import BT_DSB, DSB_TLS_KEY_LOG
from pcap_tls_split.cli import main
from pcap_tls_split.view.extract import extract, key_log_lines

from conftest import ROOT, SAMPLES

TRIES = SAMPLES / "field-bug-70-tries.pcap"
TRIES_KEYS = SAMPLES / "field-bug-70-tries.keys"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
FAILING = sorted(int(s) for s, v in EXPECTED["field-bug-70-tries.pcap"]["streams"].items() if v["must"])


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tshark_fields(tshark, path, *fields, display=None, options=()):
    cmd = [tshark, "-r", str(path), *options, "-T", "fields", "-E", "separator=|"]
    if display:
        cmd += ["-Y", display]
    for field in fields:
        cmd += ["-e", field]
    env = dict(os.environ, HOME=str(path.parent), LC_ALL="C")    # no personal profile, no keylog pref
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=120).stdout
    return [line.split("|") for line in out.splitlines()]


@pytest.fixture(scope="module")
def tries_extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("extract") / "flagged.pcapng"
    done = extract([str(TRIES)], str(out), keylog=str(TRIES_KEYS))
    return out, done


def test_the_twelve_failing_tries_and_nothing_else(tries_extract):
    out, done = tries_extract
    assert len(FAILING) == 12
    assert [c.stream for c in done.connections] == FAILING
    assert [c.new_stream for c in done.connections] == list(range(12))
    assert all("close_before_pending_records" in c.findings for c in done.connections)
    assert done.key_lines == 12 and all(c.key_lines == 1 for c in done.connections)
    assert done.errors == ()
    # our own reading of the extract: the same twelve connections, the same verdicts
    again = pcap_tls_split.analyze(str(out), all_connections=True)
    original = {c.stream: c for c in pcap_tls_split.analyze(str(TRIES)).connections}
    assert len(again.connections) == 12
    for new, conn in zip(again.connections, done.connections):
        old = original[conn.stream]
        assert (new.client, new.server) == (old.client, old.server)
        assert [(f.code, f.severity, f.side) for f in new.findings] == \
            [(f.code, f.severity, f.side) for f in old.findings]


def test_the_extract_holds_every_frame_of_those_streams(tries_extract, tshark):
    out, done = tries_extract
    wanted = " || ".join(f"tcp.stream eq {s}" for s in FAILING)
    original = tshark_fields(tshark, TRIES, "frame.time_epoch", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
                             "tcp.flags", "frame.len", display=wanted)
    extracted = tshark_fields(tshark, out, "frame.time_epoch", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
                              "tcp.flags", "frame.len")
    assert extracted == original and len(extracted) == done.packets == sum(c.packets for c in done.connections)


def test_tshark_sees_the_same_streams_renumbered_from_0(tries_extract, tshark):
    out, done = tries_extract
    by_port = {}
    for stream, port in tshark_fields(tshark, TRIES, "tcp.stream", "tcp.srcport", display="tcp.flags.syn==1 && tcp.flags.ack==0"):
        by_port[port] = int(stream)
    for stream, port in tshark_fields(tshark, out, "tcp.stream", "tcp.srcport", display="tcp.flags.syn==1 && tcp.flags.ack==0"):
        conn = done.connections[int(stream)]
        assert conn.new_stream == int(stream) and by_port[port] == conn.stream


def test_comments_on_the_frames_the_findings_point_at(tries_extract, tshark):
    out, done = tries_extract
    report = pcap_tls_split.analyze(str(TRIES))
    wanted = " || ".join(f"tcp.stream eq {s}" for s in FAILING)
    original_frames = [int(f) for (f,) in tshark_fields(tshark, TRIES, "frame.number", display=wanted)]
    new_number = {old: i + 1 for i, old in enumerate(original_frames)}
    comments = {int(f): c for f, c in tshark_fields(tshark, out, "frame.number", "frame.comment",
                                                    display="frame.comment")}
    for conn in report.connections:
        for finding in conn.findings:
            text = comments[new_number[finding.frame]]
            assert f"pcap-tls-split {finding.code} ({finding.severity}, {finding.side}" in text
            assert finding.message in text and f"tcp.stream {conn.stream}, frame {finding.frame}" in text
    # and only there, or on a frame the evidence names
    named = set()
    for conn in report.connections:
        for finding in conn.findings:
            named.add(finding.frame)
            ev = finding.evidence
            named.update(x for x in (ev.get("rst_frame"), ev.get("fin_frame"), ev.get("first_lost_frame"),
                                     (ev.get("first_pending") or {}).get("frame"),
                                     (ev.get("last_received") or {}).get("frame")) if x)
    assert set(comments) == {new_number[f] for f in named}
    # Wireshark's Expert Info lists them
    expert = tshark_fields(tshark, out, "frame.number", display="_ws.expert.group == 0x0b000000")
    assert {int(f) for (f,) in expert} == set(comments)


def test_wireshark_decrypts_from_the_file_alone(tries_extract, tshark, tmp_path):
    out, done = tries_extract
    responses = tshark_fields(tshark, out, "tcp.stream", "http.response.code", display="http.response")
    assert sorted(int(s) for s, _ in responses) == list(range(12))
    assert {code for _, code in responses} == {"401"}
    # the key log is what decrypts: without it, nothing
    bare = tmp_path / "bare.pcapng"
    extract([str(TRIES)], str(bare))
    assert tshark_fields(tshark, bare, "tcp.stream", display="http") == []


def test_the_decryption_secrets_block_holds_only_those_connections(tries_extract):
    out, done = tries_extract
    data = out.read_bytes()
    pos, secrets = 0, []
    while pos < len(data):
        block_type, length = int.from_bytes(data[pos:pos + 4], "little"), int.from_bytes(data[pos + 4:pos + 8], "little")
        if block_type == BT_DSB:
            kind = int.from_bytes(data[pos + 8:pos + 12], "little")
            size = int.from_bytes(data[pos + 12:pos + 16], "little")
            assert kind == DSB_TLS_KEY_LOG
            secrets.append(data[pos + 16:pos + 16 + size].decode())
        pos += length
    assert len(secrets) == 1
    lines = secrets[0].splitlines()
    all_lines = [line for line in TRIES_KEYS.read_text().splitlines() if line and not line.startswith("#")]
    assert len(all_lines) == 70 and len(lines) == 12 and set(lines) <= set(all_lines)
    with open_capture(str(out)) as capture:
        assert capture.format == "pcapng" and sum(1 for _ in capture.frames()) == done.packets


def test_one_stream_of_several_files_and_a_tls13_key_log(tmp_path, tshark):
    out = tmp_path / "two.pcapng"
    keys = tmp_path / "both.keys"
    keys.write_text((SAMPLES / "field-bug-tls13.keys").read_text() + (SAMPLES / "half-record.keys").read_text())
    result = run("extract", str(SAMPLES / "field-bug-tls13.pcap"), str(SAMPLES / "half-record.pcap"),
                 "--stream", "0", "-o", str(out), "--keylog", str(keys), "--format", "json")
    assert result.exit_code == 0
    said = json.loads(result.stdout)
    assert [(c["stream"], c["new_stream"]) for c in said["connections"]] == [(0, 0), (0, 1)]
    assert said["key_lines"] == len([ln for ln in keys.read_text().splitlines() if ln and ln[0] != "#"])
    codes = tshark_fields(tshark, out, "tcp.stream", "http.response.code", display="http.response")
    assert sorted(int(s) for s, _ in codes) == [0, 1]


def test_by_finding_code(tmp_path):
    out = tmp_path / "inside.pcapng"
    result = run("extract", str(SAMPLES), "--finding", "close_inside_record", "-o", str(out), "--format", "csv")
    assert result.exit_code == 0
    rows = result.stdout.splitlines()[1:]
    assert sorted(r.split(",")[0].rsplit("/", 1)[1] for r in rows) == ["client-rst-mid-record.pcap",
                                                                        "half-record.pcap"]


def test_nothing_to_extract_writes_nothing(tmp_path):
    out = tmp_path / "none.pcapng"
    result = CliRunner().invoke(main, ["extract", str(SAMPLES / "no-close-notify.pcap"), "-o", str(out)])
    assert result.exit_code == 0 and not out.exists()
    assert "no connection with a finding at or above medium" in result.output


def test_bad_inputs_say_so_in_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def cli(*args, data=None):
        return subprocess.run([sys.executable, "-m", "pcap_tls_split", "extract", *args], input=data,
                              capture_output=True, cwd=ROOT, env=env, timeout=120)

    bad = tmp_path / "notes.pcap"
    bad.write_text("hello\n")
    for result in (cli(str(bad), "-o", str(tmp_path / "x.pcapng")),
                   cli("-", "-o", str(tmp_path / "y.pcapng"), data=TRIES.read_bytes()),
                   cli(str(TRIES), "-o", str(tmp_path / "no" / "such" / "dir.pcapng"))):
        error = result.stderr.decode().strip()
        assert result.returncode == 2 and error.count("\n") == 0 and "Traceback" not in error, error
    unkeyed = tmp_path / "other.keys"
    unkeyed.write_text("CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48 + "\n")
    result = cli(str(SAMPLES / "field-bug-tls12.pcap"), "-o", str(tmp_path / "z.pcapng"), "--keylog", str(unkeyed))
    assert result.returncode == 0 and "has no line for its client random" in result.stderr.decode()


def test_key_log_lines_by_client_random(tmp_path):
    log = tmp_path / "k.log"
    a, b = bytes(range(32)), bytes(range(1, 33))
    log.write_text(f"# comment\nCLIENT_RANDOM {a.hex().upper()} {'ab' * 48}\n"
                   f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {b.hex()} {'cd' * 32}\nbroken line\n"
                   f"SERVER_TRAFFIC_SECRET_0 {a.hex()} {'ef' * 32}\n")
    found = key_log_lines(str(log), [a])
    assert list(found) == [a] and len(found[a]) == 2
