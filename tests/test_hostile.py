"""Hostile input at the scale of real captures, through the library and the CLI:
damaged gzip, FIFOs in a directory and on the command line, a resynchronisation
storm, thousands of holes, a key log of any size or a FIFO, and a killed run
(the captures are made by tests/hostile.py)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import hostile
import pcap_tls_split
import pcap_tls_split.api

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def cli(*args, input=None, timeout=120):
    """The CLI in a process of its own: (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "pcap_tls_split", *args], cwd=ROOT, input=input,
                          capture_output=True, timeout=timeout)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def inputs_and_connections(report):
    d = report.to_dict()
    return [(i["packets"], i["tcp_connections"], i["tls_connections"]) for i in d["inputs"]], \
        d["connections"]


# -- damaged gzip: analysed up to the damage ------------------------------------------------

def test_damaged_gzip_is_analysed_up_to_the_damage(tmp_path):
    paths = hostile.gzip_variants(SAMPLES / "field-bug-70-tries.pcap", tmp_path)
    plain = pcap_tls_split.analyze(str(SAMPLES / "field-bug-70-tries.pcap"), all_connections=True)
    for name in ("bad-crc", "zero-trailer"):
        report = pcap_tls_split.analyze(paths[name], all_connections=True)
        (inp,) = report.inputs
        assert inp.format == "pcap" and inp.packets == plain.inputs[0].packets == 1352, name
        assert [c.findings for c in report.connections] == [c.findings for c in plain.connections]
        assert len(inp.errors) == 1 and "CRC-32 in its trailer does not match" in inp.errors[0]
    for name in ("late-flip", "cut"):
        (inp,) = pcap_tls_split.analyze(paths[name]).inputs
        assert inp.format == "pcap" and 1000 < inp.packets <= 1352 and len(inp.errors) == 1, name


def test_damaged_gzip_exits_as_a_cut_capture_does(tmp_path):
    paths = hostile.gzip_variants(SAMPLES / "field-bug-70-tries.pcap", tmp_path)
    status, _, err = cli("analyze", "--format", "json", paths["intact"])
    assert status == 1 and err == ""                  # the sample has high findings
    for name in ("bad-crc", "zero-trailer", "late-flip", "cut"):
        status, out, err = cli("analyze", "--format", "json", paths[name])
        assert status == 1, (name, err)
        assert json.loads(out)["inputs"][0]["packets"] > 1000
        assert len(err.splitlines()) == 1 and err.startswith(f"pcap-tls-split: {paths[name]}: ")
        assert "Traceback" not in err


# -- FIFOs, sockets, devices ------------------------------------------------------------------

def _directory_with_a_fifo(tmp_path):
    folder = tmp_path / "caps"
    folder.mkdir()
    (folder / "a.pcap").write_bytes((SAMPLES / "field-bug-tls12.pcap").read_bytes())
    os.mkfifo(folder / "b.pcap")                       # nobody will ever write to it
    (folder / "c.pcap").write_bytes((SAMPLES / "split-header.pcap").read_bytes())
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(folder / "d.sock"))
    return folder, listening


def test_a_directory_walk_skips_a_fifo_and_a_socket_without_opening_them(tmp_path):
    folder, listening = _directory_with_a_fifo(tmp_path)
    (folder / "README").write_text("captures of the field bug\n")
    with listening:
        skipped = []
        assert list(pcap_tls_split.api.expand_inputs([folder], skipped)) == [
            str(folder / "a.pcap"), str(folder / "c.pcap")]
        assert skipped == [str(folder / n) for n in ("README", "b.pcap", "d.sock")]
        report = pcap_tls_split.analyze(str(folder))
        assert [i.path for i in report.inputs] == [str(folder / "a.pcap"), str(folder / "c.pcap")]
        status, out, err = cli("analyze", "--format", "json", "--width", "0", str(folder), timeout=60)
    assert status == 1 and len(json.loads(out)["inputs"]) == 2
    assert err.splitlines() == [
        f"pcap-tls-split: skipped 3 file(s) in {folder}/, not captures: README, "
        "b.pcap (a named pipe (FIFO), not opened), d.sock (a socket, not opened)"]


def test_a_fifo_named_on_the_command_line_is_read_as_a_stream(tmp_path):
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    capture = (SAMPLES / "field-bug-70-tries.pcap").read_bytes()

    def write():
        with open(fifo, "wb") as f:                    # in pieces, as a capturer writes
            for at in range(0, len(capture), 9000):
                f.write(capture[at:at + 9000])
                f.flush()

    writer = threading.Thread(target=write)
    writer.start()
    report = pcap_tls_split.analyze(str(fifo), all_connections=True)
    writer.join(10)
    expected = pcap_tls_split.analyze(str(SAMPLES / "field-bug-70-tries.pcap"), all_connections=True)
    assert report.inputs[0].packets == expected.inputs[0].packets == 1352
    assert report.inputs[0].errors == ()
    assert [c.findings for c in report.connections] == [c.findings for c in expected.connections]


# -- a resynchronisation storm, thousands of holes --------------------------------------------

def test_a_resynchronisation_storm_is_analysed_as_its_calm_twin(tmp_path):
    """(tests/test_resync.py bounds the work; here the whole path gives the answer.)"""
    storm = hostile.make_resync_storm(tmp_path / "storm.pcap", segments=60)
    calm = hostile.make_resync_storm(tmp_path / "calm.pcap", segments=60, calm=True)
    reports = [pcap_tls_split.analyze(p, all_connections=True).connections for p in (storm, calm)]
    for (conn,) in reports:
        assert conn.quality.gaps == 1 and conn.quality.resyncs == 1
        assert conn.records["server"].total == 1             # the ServerHello; no framing after
    assert reports[0][0].findings == reports[1][0].findings


def test_thousands_of_holes_are_each_a_gap(tmp_path):
    """(tests/test_reassembly.py bounds the work per segment.)"""
    holes = hostile.make_holes(tmp_path / "holes.pcap", holes=6000)
    (conn,) = pcap_tls_split.analyze(holes, all_connections=True).connections
    assert conn.quality.gaps == 6000 and conn.quality.out_of_order == 6000
    reverse = hostile.make_holes(tmp_path / "reverse.pcap", holes=6000, reverse=True)
    (conn,) = pcap_tls_split.analyze(reverse, all_connections=True).connections
    # HOLD_SEGMENTS (4096) held, then the hole before them is a gap: the rest came too late
    assert conn.quality.gaps == 1 and conn.quality.out_of_order == 4097


# -- a key log of any size, or a FIFO; tshark ended on every exit path -------------------------

def test_the_key_log_keeps_the_lines_of_the_client_randoms_only(tmp_path):
    from pcap_tls_split.wireshark.decrypt import read_keylog, write_keys
    wanted = "ab" * 32
    keys = tmp_path / "k.log"
    keys.write_bytes(b"# a comment\n\n"
                     + f"CLIENT_RANDOM {wanted.upper()} {'11' * 48}\n".encode()
                     + f"CLIENT_RANDOM {'cd' * 32} {'22' * 48}\n".encode()
                     + b"X" * 100000 + b"\n"                          # no key log line
                     + f"SERVER_TRAFFIC_SECRET_0 {wanted} {'33' * 48}\r\n".encode()
                     + f"RSA {'01' * 8} {'44' * 48}\n".encode()
                     + f"CLIENT_RANDOM {wanted} {'55' * 48}".encode())  # no newline at the end
    kept = read_keylog(keys, {wanted.encode()})
    assert kept[wanted.encode()] == [f"CLIENT_RANDOM {wanted.upper()} {'11' * 48}\n".encode(),
                                     f"SERVER_TRAFFIC_SECRET_0 {wanted} {'33' * 48}\n".encode(),
                                     f"CLIENT_RANDOM {wanted} {'55' * 48}\n".encode()]
    assert kept[None] == [f"RSA {'01' * 8} {'44' * 48}\n".encode()]
    written = write_keys(tmp_path, "x", kept, {wanted.encode()})
    assert os.stat(written).st_mode & 0o777 == 0o600
    assert Path(written).read_bytes() == b"".join(kept[wanted.encode()] + kept[None])


def _decrypted(report):
    return [(c.stream, f.code, f.message, f.evidence.get("app_data")) for c in report.connections
            for f in c.findings]


def test_a_key_log_of_300000_lines_or_a_fifo_decrypts_as_the_capture_s_own(tmp_path, tshark):
    from pcap_tls_split import wireshark
    capture = SAMPLES / "field-bug-tls12.pcap"
    own = wireshark.analyze(str(capture), keylog=str(capture.with_suffix(".keys")))
    assert "the lost record was the body of HTTP/1.1 401" in own.connections[0].findings[0].message
    big = hostile.make_keylog(tmp_path / "big.keys", keep=capture.with_suffix(".keys"))
    assert _decrypted(wireshark.analyze(str(capture), keylog=big)) == _decrypted(own)
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: Path(fifo).write_bytes(Path(big).read_bytes()))
    writer.start()
    status, out, err = cli("analyze", "--format", "json", "--keylog", str(fifo), str(capture), timeout=60)
    writer.join(10)
    assert status == 1 and err == ""
    report = json.loads(out)
    assert [f["evidence"].get("app_data") for c in report["connections"] for f in c["findings"]] == \
        [evidence for _, _, _, evidence in _decrypted(own)]


def _tshark_reading(capture):
    """Processes running tshark on ``capture``: {pid: command line}."""
    found = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command[0].endswith(b"tshark") and os.fsencode(capture) in command:
                found[int(pid)] = command
    return found


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                            (signal.SIGHUP, 128 + signal.SIGHUP),
                                            (signal.SIGINT, 130)], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_killed_run_leaves_no_tshark_and_no_key_file(tmp_path, tshark, signum, status):
    """Killed while tshark decrypts (a capture of 100,000 packets: seconds of
    tshark), the run ends its tshark first and removes its private key log."""
    capture = hostile.make_holes(tmp_path / "long.pcap", calm=True)
    run = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "records", "--keylog",
                            str(SAMPLES / "field-bug-tls12.keys"), capture],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _tshark_reading(capture) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        ((pid, command),) = _tshark_reading(capture).items()
        (keys,) = [arg.split(b":", 1)[1] for arg in command if arg.startswith(b"tls.keylog_file:")]
        assert os.path.exists(keys) and keys != os.fsencode(SAMPLES / "field-bug-tls12.keys")
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        (config,) = [v.split(b"=", 1)[1] for v in environment if v.startswith(b"WIRESHARK_CONFIG_DIR=")]
        run.send_signal(signum)
        assert run.wait(30) == status
        assert _tshark_reading(capture) == {}           # gone when we are: not later
        assert not os.path.exists(keys) and not os.path.exists(config)
        assert b"Traceback" not in run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


# A signal at the worst moments for pyshark's own code: before tshark is started;
# after, once the coroutine that reads its stderr is made but before it is a task;
# before pyshark has noted the process; while a packet is read. The script sends
# it to itself at that moment.
_SIGNAL_AT = """
import inspect, os, signal, sys
import pyshark.capture.capture as capture
import pyshark.tshark.output_parser.base_parser as base_parser
from pcap_tls_split import cli
module, cls, name = sys.argv[1].split(".")
owner = getattr(globals()[module], cls)
original = getattr(owner, name)
def signalled(self, *args, **kwargs):
    made = original(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)
    return made
if inspect.iscoroutinefunction(original) and name != "_handle_process_stderr_forever":
    async def signalled(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return await original(self, *args, **kwargs)
setattr(owner, name, signalled)
cli.main(sys.argv[2:], prog_name="pcap-tls-split")
"""


@pytest.mark.parametrize("where", ["capture.Capture._get_tshark_process",
                                   "capture.Capture._handle_process_stderr_forever",
                                   "capture.Capture._created_new_process",
                                   "base_parser.BaseTsharkOutputParser.get_packets_from_stream"])
def test_a_signal_inside_pyshark_s_own_code_ends_the_run_cleanly(tmp_path, tshark, where):
    """The run ends with 130, no tshark left, no temporary file left, and
    nothing on stderr about a transport or a coroutine left behind."""
    capture = SAMPLES / "client-rst.pcap"
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    run = subprocess.run([sys.executable, "-c", _SIGNAL_AT, where, "records", "--keylog",
                          str(SAMPLES / "client-rst.keys"), str(capture)],
                         cwd=ROOT, capture_output=True, timeout=60,
                         env={**os.environ, "TMPDIR": str(temporary)})
    assert run.returncode == 130, run.stderr
    assert _tshark_reading(capture) == {}
    assert list(temporary.iterdir()) == []
    for text in (b"Traceback", b"Exception ignored", b"never awaited", b"Warning"):
        assert text not in run.stderr


def _verify_captures(tmp_path, count):
    """``count`` captures for verify -j that keep tshark busy a while: one with holes
    and copies of it (copies: a file named twice is read once)."""
    first = hostile.make_holes(tmp_path / "0.pcap", calm=True)
    captures = [first]
    for n in range(1, count):
        captures.append(str(tmp_path / f"{n}.pcap"))
        shutil.copyfile(first, captures[-1])
    return captures


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                            (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_killed_verify_of_files_in_threads_leaves_no_tshark(tmp_path, tshark, signum, status):
    """verify -j 2 runs tshark in threads of its own: a signal ends those too, at once."""
    captures = _verify_captures(tmp_path, 3)
    run = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "verify", "-j", "2", *captures],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(_tshark_reading(c) for c in captures) and run.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(_tshark_reading(c) for c in captures)
        run.send_signal(signum)
        assert run.wait(15) == status
        time.sleep(0.2)
        assert [_tshark_reading(c) for c in captures] == [{}, {}, {}]    # none left, none begun
        assert b"Traceback" not in run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


# A signal the kernel hands to a thread other than the main one (a process-directed
# signal may go to any thread): here a thread sends it to itself once tshark runs.
SIGNAL_IN_A_THREAD = """
import os, signal, sys, threading, time
from pcap_tls_split.wireshark import verify

def send():
    while not any(b"tshark" in open(f"/proc/{p}/cmdline", "rb").read().split(b"\\0")[0]
                  for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/cmdline")):
        time.sleep(0.01)
    print(time.monotonic(), flush=True)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=send, daemon=True).start()
verify(sys.argv[1:], jobs=2)
"""


def test_a_signal_taken_by_another_thread_still_ends_verify_j_at_once(tmp_path, tshark):
    captures = _verify_captures(tmp_path, 4)
    run = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_THREAD, *captures], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    ended = time.monotonic()
    assert run.returncode == 128 + signal.SIGTERM, run.stderr
    sent = float(run.stdout.split()[0])
    # (it waited for a running tshark to end: 5 s and more here)
    assert ended - sent < 3, ended - sent
    assert [_tshark_reading(c) for c in captures] == [{}, {}, {}, {}]
    assert "Traceback" not in run.stderr


def test_a_signal_noted_in_one_run_is_not_the_next_one_s():
    from pcap_tls_split import wireshark
    from pcap_tls_split.wireshark import tshark as bridge
    with pytest.raises(KeyboardInterrupt):
        with bridge.ended_on_signals():
            bridge._on_signal(signal.SIGINT, None)      # as a signal would
    assert bridge.NOTED == []
    # a run after it: its tshark is not taken for one started after the signal
    rows = wireshark.records(str(SAMPLES / "client-rst.pcap"), keylog=str(SAMPLES / "client-rst.keys"))
    assert rows
