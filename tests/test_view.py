"""Pictures of connections: the second pass that keeps every packet and record, the text
ladder (``show``) and the SVG, on the samples. Whole outputs are compared in
tests/golden/show-*.out; these check what the pictures must say."""

import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import xml.etree.ElementTree as ET
from pathlib import Path

import fcntl
import pytest
from click.testing import CliRunner

import pcap_tls_split
from pcap_tls_split.cli import main
from pcap_tls_split.frame import FIN, RST
from pcap_tls_split.view import detail as detail_module
from pcap_tls_split.view import ladder, svg
from pcap_tls_split.view.detail import Omitted, Packet, collect

from conftest import ROOT, SAMPLES

ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def one(name, stream=0):
    details = collect(str(SAMPLES / name), {stream}).details
    assert len(details) == 1
    return details[0]


PACKET_LINE = re.compile(r"^\s*[\d.]+\s+(\d+)\s\s\S")


def notes(lines):
    """{frame: what the ladder says beside it, its wrapped lines joined}."""
    out, frame, column = {}, None, None
    for line in lines:
        match = PACKET_LINE.match(line)
        if match:
            frame = int(match.group(1))
            column = min(i for i in (line.find("│"), line.find("|")) if i >= 0)
        elif frame is None or len(line) <= column or line[column] not in "│|":
            frame = None               # a pause or a fold ends the packet's notes
            continue
        cells = re.split(r"[│|]", line[column:], maxsplit=2)
        text = cells[2] if len(cells) == 3 else ""
        if text.strip():
            out[frame] = " ".join((out.get(frame, "") + " " + text).split())
    return out


def line_of(lines, pattern):
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no line matches {pattern!r}:\n" + "\n".join(lines)
    return found[0]


# -- the second pass --------------------------------------------------------------------

@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_record_is_kept_with_its_segments(path):
    """The details hold exactly the records ``records`` reports, with the same frames."""
    rows = pcap_tls_split.records(str(path))
    reports = {c.stream: c for c in pcap_tls_split.analyze(str(path), all_connections=True).connections}
    got = collect(str(path), set(reports)).details
    assert {d.stream for d in got} == set(reports)
    for det in got:
        assert det.report == reports[det.stream]
        kept = {(role, r.index): (r.offset, r.type, r.length, r.frames)
                for role, records in det.records.items() for r in records if r.complete}
        want = {(r.side, r.index): (r.offset, r.type, r.length, r.frames)
                for r in rows if r.stream == det.stream}
        assert kept == want


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_packet_of_the_stream_is_kept(path, tshark):
    """The packets kept are the frames Wireshark puts in that tcp.stream, with their flags."""
    for det in collect(str(path), set(range(80))).details:
        out = subprocess.run([tshark, "-r", str(path), "-Y", f"tcp.stream eq {det.stream}", "-T", "fields",
                              "-e", "frame.number", "-e", "tcp.flags", "-e", "tcp.len"],
                             capture_output=True, text=True, check=True).stdout
        want = [(int(f), int(flags, 16) & 0xFF, int(n)) for f, flags, n in
                (line.split("\t") for line in out.splitlines())]
        assert [(p.frame, p.flags, p.length) for p in det.packets] == want


def test_a_long_connection_keeps_its_start_and_end(monkeypatch):
    total = one("straddling-healthy.pcap").packets
    assert not any(isinstance(p, Omitted) for p in total)
    monkeypatch.setattr(detail_module, "HEAD", 20)
    monkeypatch.setattr(detail_module, "TAIL", 30)
    cut = one("straddling-healthy.pcap")
    omitted = [p for p in cut.packets if isinstance(p, Omitted)]
    assert len(omitted) == 1 and cut.packets[20] is omitted[0]
    gap = omitted[0]
    assert cut.packets[:20] == total[:20] and cut.packets[21:] == total[-30:]
    assert gap.packets == len(total) - 50
    assert (gap.first_frame, gap.last_frame) == (total[20].frame, total[-31].frame)
    middle = total[20:-30]
    assert gap.client_bytes == sum(p.length for p in middle if p.from_client)
    assert gap.server_bytes == sum(p.length for p in middle if not p.from_client)
    assert any("not kept: frames" in line for line in ladder.ladder(cut))


def test_a_stream_that_is_not_there_gives_nothing():
    got = collect(str(SAMPLES / "field-bug-tls12.pcap"), {7})
    assert got.details == [] and got.readable


def test_a_file_that_is_not_a_capture(tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_text("not a capture\n")
    got = collect(str(bad), {0})
    assert not got.readable and len(got.errors) == 1 and str(bad) in got.errors[0]


# -- the text ladder ----------------------------------------------------------------------

def test_the_field_bug_shows_the_lost_record_after_the_fin():
    lines = ladder.ladder(one("field-bug-tls12.pcap"), width=100)
    said = notes(lines)
    assert said[11] == "S#7 app data len 166"
    assert said[13] == "client closes first (FIN) · reach 1701 = end of S#7"
    assert said[15] == "S#8 app data len 103 ✗ LOST: came after the client's FIN, answered with RST"
    assert said[16] == "client resets (RST)"
    last, fin, lost, rst = (line_of(lines, rf"^\s*[\d.]+\s+{n}\s") for n in (11, 13, 15, 16))
    assert last < fin < lost < rst
    assert "100.5 ms" in lines[last + 1] and "1 ACK" in lines[last + 1]   # the reaction time, the ACK folded
    assert "▶" in lines[fin] and "FIN" in lines[fin] and "◀" in lines[lost]
    assert "✗" not in "".join(lines[:lost])
    assert "high close_before_pending_records (client, frame 13, confidence high)" in lines


def test_client_on_the_left_server_on_the_right():
    lines = ladder.ladder(one("field-bug-tls12.pcap"), width=100)
    syn = lines[line_of(lines, r"^\s*[\d.]+\s+1\s")]
    synack = lines[line_of(lines, r"^\s*[\d.]+\s+2\s")]
    assert syn.index("SYN") < syn.index("▶") and synack.index("◀") < synack.index("SYN ACK")
    assert lines[2].index("client") < lines[2].index("server")


@pytest.mark.parametrize("width", [60, 100])
def test_a_record_inside_which_the_client_closed(width):
    said = notes(ladder.ladder(one("half-record.pcap"), width=width))
    assert said[11] == "S#7 app data len 8119: part 1/2, 4096 of 8124 B"
    assert said[13] == "client closes first (FIN) · reach 5626: inside S#7 (4096 of 8124 B)"
    assert said[15] == ("S#7 app data len 8119: part 2/2, 4028 of 8124 B ✗ LOST: came after the "
                        "client's FIN, answered with RST")
    assert said[16] == "client resets (RST)"


def test_a_split_header_is_shown_on_both_segments():
    lines = ladder.ladder(one("split-header.pcap"), width=120)
    said = notes(lines)
    assert said[11] == ("S#7 app data len 119 S#8 app data len 1024: part 1/2, 2 of 1029 B (2 of 5 header "
                        "bytes: header split)")
    assert said[13] == "S#8 app data len 1024: part 2/2, 1027 of 1029 B (3 of 5 header bytes: header split)"
    first, second = line_of(lines, r"\s11\s"), line_of(lines, r"\s13\s")
    assert "200.3 ms" in "".join(lines[first:second])
    assert "✗" not in "\n".join(lines) and "no finding" in lines


def test_the_first_closer_may_be_the_server():
    """The keep-alive race: the server closed first; the client's request after it is lost."""
    said = notes(ladder.ladder(one("server-closes-keepalive-race.pcap"), width=100))
    assert said[16] == "server closes first (FIN) · reach 382 = end of C#4"
    assert said[18] == "C#5 app data len 110 ✗ LOST: came after the server's FIN, answered with RST"


def test_records_beyond_the_reach_that_no_rst_answered_are_pending():
    """TLS 1.3 preconnect: the tickets after the client's FIN come and nothing resets... but
    the client's kernel does: they are lost too; the words follow the RST."""
    det = one("tls13-preconnect.pcap")
    said = notes(ladder.ladder(det, width=120))
    assert "✗ LOST" in said[12] and said[13] == "client resets (RST)"
    dropped = det.packets[:-1]                    # the same connection without its RST
    det.packets = [p for p in dropped]
    said = notes(ladder.ladder(det, width=120))
    assert "✗ pending: came after the client's FIN" in said[12] and "LOST" not in said[12]


def test_an_incomplete_record_says_so():
    said = notes(ladder.ladder(one("client-rst-mid-record.pcap"), width=100))
    assert said[11] == ("S#7 app data len 119 S#8 app data len 8024: 3000 of 8029 B, its stream ends inside "
                        "it (incomplete)")
    assert said[13] == "client closes first (RST) · reach 4654: inside S#8 (3000 of 8029 B)"


def test_a_bulk_transfer_is_folded():
    lines = ladder.ladder(one("straddling-healthy.pcap"), width=100)
    folds = [line for line in lines if "more server segments" in line or "more client segments" in line]
    assert folds and len(lines) < 120
    assert len(lines) < len(one("straddling-healthy.pcap").packets) / 3


@pytest.mark.parametrize("width", [60, 72, 80, 100, 160])
@pytest.mark.parametrize("name", ["field-bug-tls12.pcap", "half-record.pcap", "split-header.pcap",
                                  "straddling-healthy.pcap", "field-bug-tls13.pcap",
                                  "server-closes-keepalive-race.pcap"])
def test_the_ladder_fits_the_width(name, width):
    det = one(name)
    lines = ladder.ladder(det, width=width, color=True)
    plain = [ESCAPE.sub("", line) for line in lines]
    too_wide = [line for line in plain if len(line) > width]
    assert not too_wide
    assert plain == ladder.ladder(det, width=width, color=False)   # colour changes nothing else


def test_ascii_when_the_terminal_cannot_draw_lines():
    lines = ladder.ladder(one("field-bug-tls12.pcap"), chars=ladder.ASCII)
    assert all(line.isascii() for line in lines)
    assert notes(lines)[15].startswith("S#8 app data len 103 x LOST")
    line_of(lines, r"\s15\s.*<-")


# -- the command ---------------------------------------------------------------------------

def test_show_colour_only_when_asked_or_on_a_terminal():
    plain = run("show", str(SAMPLES / "field-bug-tls12.pcap"), "--stream", "0")
    assert plain.exit_code == 0 and "\x1b[" not in plain.output
    painted = run("show", str(SAMPLES / "field-bug-tls12.pcap"), "--stream", "0", "--color", "always")
    assert "\x1b[1;31m" in painted.output and ESCAPE.sub("", painted.output) == plain.output


def test_show_on_a_terminal_fits_it_and_paints():
    """A real pseudo-terminal 84 columns wide: the ladder takes its width, in colour."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 84, 0, 0))
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm")
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "show", "-q",
                             str(SAMPLES / "half-record.pcap"), "--stream", "0"],
                            stdin=follower, stdout=follower, stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(60) == 0
    os.close(leader)
    text = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
    assert "\x1b[" in text
    lines = [ESCAPE.sub("", line) for line in text.splitlines()]
    assert max(len(line) for line in lines) <= 84 and max(len(line) for line in lines) > 76
    assert "✗ LOST" in notes(lines)[15]


def test_show_every_flagged_connection():
    result = run("show", str(SAMPLES / "field-bug-70-tries.pcap"))
    titles = re.findall(r"tcp\.stream (\d+)  TLS", result.output)
    failing = sorted(int(s) for s, v in EXPECTED["field-bug-70-tries.pcap"]["streams"].items() if v["must"])
    assert result.exit_code == 0 and sorted(map(int, titles)) == failing
    assert result.output.count("✗ LOST") == len(failing)


def test_show_by_finding_code_and_severity():
    folder = str(SAMPLES)
    inside = run("show", folder, "--finding", "close_inside_record")
    files = re.findall(r"^(\S+)  tcp\.stream", inside.output, re.M)
    assert sorted(Path(f).name for f in files) == ["client-rst-mid-record.pcap", "half-record.pcap"]
    low = run("show", str(SAMPLES / "no-close-notify.pcap"))
    assert low.exit_code == 0 and low.output == "no connection with a finding at or above medium\n"
    assert "tcp.stream 0" in run("show", str(SAMPLES / "no-close-notify.pcap"), "--min-severity", "low").output


def test_show_from_standard_input():
    data = (SAMPLES / "field-bug-tls12.pcap").read_bytes()
    piped = subprocess.run([sys.executable, "-m", "pcap_tls_split", "show", "-", "--stream", "0"],
                           input=data, capture_output=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert piped.returncode == 0 and "✗ LOST" in piped.stdout.decode()
    twice = subprocess.run([sys.executable, "-m", "pcap_tls_split", "show", "-"], input=data,
                           capture_output=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert twice.returncode == 2 and twice.stdout == b""
    error = twice.stderr.decode().strip()
    assert "\n" not in error and "--stream" in error and "Traceback" not in error


def test_show_bad_input(tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_text("hello\n")
    result = subprocess.run([sys.executable, "-m", "pcap_tls_split", "show", str(bad), "--stream", "0"],
                            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and str(bad) in result.stderr
    missing = run("show", str(SAMPLES / "field-bug-tls12.pcap"), "--stream", "5")
    assert missing.exit_code == 2 and "no TLS connection with tcp.stream 5" in missing.output
    assert run("show", str(SAMPLES / "field-bug-tls12.pcap"), "--width", "20").exit_code == 2


# -- the SVG --------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def _texts(root):
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_the_svg_of_the_field_bug():
    det = one("field-bug-tls12.pcap")
    root = ET.fromstring(svg.picture(det, "p0"))
    assert root.get("id") == "p0" and root.get("data-stream") == "0"
    texts = _texts(root)
    assert "client" in texts and "server" in texts and "127.0.0.1:43064" in texts
    # a block per record part carried: 14 records, each in one segment
    blocks = [r for r in root.iter(f"{SVG}rect") if r.get("width") == str(svg.BAR)]
    assert len(blocks) == sum(len(r.frames) for rs in det.records.values() for r in rs)
    pending = [r for r in blocks if r.get("fill") == svg.PENDING]
    assert len(pending) == 1 and "S#8" in pending[0].find(f"{SVG}title").text
    # the close, drawn below the last record received and above the lost one
    fin = [t for t in root.iter(f"{SVG}text") if "".join(t.itertext()).startswith("FIN: client closes first")]
    reach = [t for t in texts if t == "= end of S#7"] and "▲ client's reach 1701" in texts
    assert len(fin) == 1 and reach
    assert float(pending[0].get("y")) > float(fin[0].get("y"))
    lost = [t for t in texts if t.startswith("S#8") and "LOST" in t]
    assert lost
    # the findings numbered where they happened
    badges = [t for t in root.iter(f"{SVG}text") if t.get("class") == "badge"]
    assert ["".join(b.itertext()) for b in badges] == ["1", "2", "3"]


def test_the_svg_marks_a_record_that_straddles_the_pause():
    root = ET.fromstring(svg.picture(one("half-record.pcap")))
    texts = _texts(root)
    assert any("S#7 app data 8119 · part 1/2" in t for t in texts)
    assert any("S#7 app data 8119 · part 2/2 ✗ LOST" in t for t in texts)
    assert "client's reach 5626" in " ".join(texts) and "inside S#7: 4096 of 8124 B" in texts
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill-opacity")]
    assert len(bars) == 1 and bars[0].get("fill") == svg.PENDING   # one record along two segments


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_draws(path):
    for det in collect(str(path), set(range(80))).details:
        root = ET.fromstring(svg.picture(det))
        assert float(root.get("height")) > 100
        packets = [p for p in det.packets if isinstance(p, Packet) and (p.length or p.flags & (FIN | RST))]
        assert packets


def test_every_corpus_connection_draws(corpus):
    """Midstream starts, gaps, retransmissions, STARTTLS, tunnels: every TLS connection of
    the corpus is drawn, as text within the width and as well-formed SVG."""
    from conftest import corpus_files
    drawn = 0
    for path in corpus_files():
        for det in collect(str(path), set(range(300))).details:
            for width in (60, 100):
                lines = ladder.ladder(det, width=width)
                assert all(len(line) <= width for line in lines), (path.name, det.stream, width)
            ET.fromstring(svg.picture(det))
            drawn += 1
    assert drawn > 500


def test_an_icmp_error_about_the_connection(tmp_path, tshark):
    """An ICMP error quoting one of the connection's segments is in its tcp.stream for
    Wireshark: it is drawn (not as a packet of the connection) and extracted."""
    import captures
    frames = captures.read_frames(SAMPLES / "field-bug-tls12.pcap")
    lost = frames[14][2]                       # frame 15, the server's body record
    quoted = lost[14:14 + 20 + 32 + 8]         # its IP and TCP headers and 8 bytes
    icmp = captures.ethernet(captures.ip4("127.0.0.1", "127.0.0.1", 1, captures.icmp_unreachable(quoted)))
    path = tmp_path / "icmp.pcap"
    captures.write_pcap(path, frames + [(frames[-1][0] + 0.001, captures.ETHERNET, icmp, len(icmp))])
    det = collect(str(path), {0}).details[0]
    assert det.packets[-1].frame == 17 and det.packets[-1].icmp and not det.packets[-1].from_client
    said = notes(ladder.ladder(det))
    assert said[17].startswith("ICMP error quoting a server segment") and said[16] == "client resets (RST)"
    ET.fromstring(svg.picture(det))
    out = tmp_path / "x.pcapng"
    assert run("extract", str(path), "--stream", "0", "-o", str(out)).exit_code == 0
    streams = subprocess.run([tshark, "-r", str(out), "-T", "fields", "-e", "tcp.stream"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert streams == ["0"] * 17
