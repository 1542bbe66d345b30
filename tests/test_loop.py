"""The packet loop (pcap_tls_split/loop.py): the fused loop against the steps one by one.

Both loops must give the same report, the same records and the same state of
every side of every connection when it ends (``Side.counters``), field for
field: on every capture in samples/ and in the corpus, and on captures damaged
at the frame level the way capturers and networks damage them (frames
dropped, duplicated, swapped, cut by the snap length, VLAN-tagged, given other
flags, with a header byte changed).
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import captures
from conftest import corpus_files
from pcap_tls_split import analyze
from pcap_tls_split.api import FileRun
from pcap_tls_split.capture import open_capture
from pcap_tls_split.capture import streams as capture_streams
from pcap_tls_split.frame import decode
from pcap_tls_split.api import run as api_run
from pcap_tls_split.tcp import ConnectionTable
from pcap_tls_split.tcp.table import wire_key

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CAPTURES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def run_both(path, monkeypatch, **options):
    """(report, records, per-side states, segments handed to the steps) with the
    fused loop, and (report, records, per-side states) with the steps alone."""
    slow = []

    class Counted(ConnectionTable):
        # (a subclass where the analysis makes its table: a compiled class cannot be patched)
        def place(self, *args):
            slow.append(1)
            return super().place(*args)

    def analysed(fused):
        states = []
        ended = FileRun.connection_ended

        def noted(self, conn):
            states.append((conn.stream, conn.end_reason,
                           {conn.role(side): side.counters() for side in (conn.a, conn.b)}))
            return ended(self, conn)

        with monkeypatch.context() as m:
            m.setattr(FileRun, "connection_ended", noted)
            if fused:
                m.setattr(api_run, "ConnectionTable", Counted)
            rows = []
            report = analyze(str(path), all_connections=True, on_record=rows.append, fused=fused,
                             **options)
        return report, rows, states

    fused = analysed(True)
    return fused + (len(slow),), analysed(False)


@pytest.mark.parametrize("name", CAPTURES)
def test_samples_same_both_ways(name, monkeypatch):
    (fused, rows, states, slow), (steps, step_rows, step_states) = run_both(SAMPLES / name, monkeypatch)
    assert fused == steps
    assert rows == step_rows
    assert states == step_states
    packets = fused.inputs[0].packets
    assert rows and packets
    # the fused path did take the common case itself
    assert slow < packets


@pytest.mark.parametrize("version", [1, 2])
def test_linux_cooked_captures_same_both_ways(version, tmp_path, monkeypatch):
    """tcpdump -i any writes Linux cooked headers: the fused path reads them too."""
    path = tmp_path / "cooked.pcap"
    frames = captures.read_frames(SAMPLES / "straddling-healthy.pcap")
    captures.write_pcap(path, captures.as_linux_cooked(frames, version))
    (fused, rows, states, slow), (steps, step_rows, step_states) = run_both(path, monkeypatch)
    assert fused == steps and rows == step_rows and states == step_states
    assert len(rows) > 90
    assert slow < fused.inputs[0].packets / 2, (slow, fused.inputs[0].packets)


def test_most_packets_of_a_bulk_transfer_take_the_fused_path(monkeypatch):
    # straddling-healthy: records of 16 KB over many segments
    (fused, rows, states, slow), (steps, _, step_states) = run_both(SAMPLES / "straddling-healthy.pcap", monkeypatch)
    assert fused == steps
    assert slow < fused.inputs[0].packets / 2, (slow, fused.inputs[0].packets)


@pytest.mark.parametrize("every, seconds", [(1, 1.0), (2, 1.0), (7, 1.0), (100000, 0.002)])
def test_sweeps_and_idle_timeouts_same_both_ways(every, seconds, monkeypatch):
    """Connections ended by sweeps (every so many packets, or so much capture time)
    in the middle of runs of segments."""
    from pcap_tls_split import loop
    from pcap_tls_split.tcp import table
    monkeypatch.setattr(table, "SWEEP_EVERY", every)
    monkeypatch.setattr(table, "SWEEP_SECONDS", seconds)
    monkeypatch.setattr(loop, "SWEEP_SECONDS", seconds)
    for name, idle in (("field-bug-70-tries.pcap", 0.05), ("straddling-healthy.pcap", 0.001)):
        (fused, rows, states, _), (steps, step_rows, step_states) = run_both(SAMPLES / name, monkeypatch,
                                                         idle_timeout=idle)
        assert fused == steps, name
        assert rows == step_rows, name
        assert states == step_states, name
        if name.startswith("straddling"):
            # its one connection went idle between segments and came back
            assert len(fused.connections) > fused.summary.connections


def test_corpus_same_both_ways(corpus, monkeypatch):
    checked = 0
    for path in corpus_files():
        (fused, rows, states, _), (steps, step_rows, step_states) = run_both(path, monkeypatch)
        assert fused == steps, path
        assert rows == step_rows, path
        assert states == step_states, path
        checked += 1
    assert checked > 150


# --------------------------------------------------------------- damaged captures

def _vlan(data):
    return data[:12] + b"\x81\x00\x00\x07" + data[12:]


def _flags(data, flags):
    if data[12:14] != b"\x08\x00" or len(data) < 15:
        return data
    at = 14 + (data[14] & 15) * 4 + 13
    if at >= len(data):
        return data
    return data[:at] + bytes([flags]) + data[at + 1:]


CHANGES = st.lists(st.tuples(
    st.sampled_from(["drop", "duplicate", "swap", "snap", "vlan", "flags", "flip"]),
    st.floats(0, 1, exclude_max=True),               # where, as a fraction of the frames
    st.integers(0, 1 << 16)), max_size=8)            # how (a length, a flag choice...)


def damage(frames, changes):
    out = list(frames)
    for what, where, how in changes:
        i = int(where * len(out))
        t, lt, data, orig = out[i]
        if what == "drop" and len(out) > 1:
            del out[i]
        elif what == "duplicate":
            out.insert(min(i + 1 + how % 3, len(out)), out[i])
        elif what == "swap" and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
        elif what == "snap" and len(data) > 40:
            out[i] = (t, lt, data[:14 + how % (len(data) - 14)], orig)
        elif what == "vlan":
            out[i] = (t, lt, _vlan(data), orig + 4)
        elif what == "flags":
            out[i] = (t, lt, _flags(data, (0x10, 0x18, 0x11, 0x14, 0x00)[how % 5]), orig)
        elif what == "flip" and len(data) > 14:
            # a byte of the headers changed: version, lengths, protocol, offsets...
            at = 12 + how % (min(len(data), 80) - 12)
            out[i] = (t, lt, data[:at] + bytes([how >> 8 & 0xFF]) + data[at + 1:], orig)
    # capture times stay in order (a swap exchanges the frames, not the times)
    times = sorted(f[0] for f in out)
    return [(t, lt, data, orig) for t, (_, lt, data, orig) in zip(times, out)]


@pytest.mark.parametrize("name", ["field-bug-tls12.pcap", "straddling-healthy.pcap",
                                  "split-header.pcap", "client-rst-mid-record.pcap"])
def test_damaged_captures_same_both_ways(name, tmp_path, monkeypatch):
    frames = captures.read_frames(SAMPLES / name)
    path = tmp_path / "damaged.pcap"

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(changes=CHANGES)
    def check(changes):
        captures.write_pcap(path, damage(frames, changes))
        (fused, rows, states, _), (steps, step_rows, step_states) = run_both(path, monkeypatch)
        assert fused == steps
        assert rows == step_rows
        assert states == step_states

    check()


@pytest.mark.parametrize("chunk", [7, 100, 1500, 4000])
def test_reads_of_any_size_same_both_ways(chunk, monkeypatch):
    """Records cut by the end of a read are completed from the next one."""
    path = SAMPLES / "straddling-healthy.pcap"
    (expected, expected_rows, _, _), _ = run_both(path, monkeypatch)
    monkeypatch.setattr(capture_streams, "CHUNK", chunk)
    (fused, rows, states, _), (steps, step_rows, step_states) = run_both(path, monkeypatch)
    assert fused == steps == expected
    assert rows == step_rows == expected_rows


@pytest.mark.parametrize("chunk", [None, 50])
def test_a_capture_cut_short_same_both_ways(chunk, tmp_path, monkeypatch):
    if chunk:
        monkeypatch.setattr(capture_streams, "CHUNK", chunk)
    data = (SAMPLES / "split-header.pcap").read_bytes()
    path = tmp_path / "cut.pcap"
    for cut in range(len(data) - 700, len(data), 37):
        path.write_bytes(data[:cut])
        (fused, rows, states, _), (steps, step_rows, step_states) = run_both(path, monkeypatch)
        assert fused == steps, cut
        assert rows == step_rows, cut
        assert states == step_states, cut
        assert fused.inputs[0].errors and "capture cut short" in fused.inputs[0].errors[0]


def test_an_internal_error_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    # (a function the record tracker calls through its module: the tracker and the
    # module may be compiled, their classes cannot be patched)
    from pcap_tls_split.tls import wire
    calls = []

    def failing(body):
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(wire, "server_hello", failing)
    report = analyze(str(SAMPLES / "straddling-healthy.pcap"), all_connections=True)
    errors = report.inputs[0].errors
    assert calls == [1]
    assert len(errors) == 1 and "internal error at frame" in errors[0] and "boom" in errors[0]
    # the frames after it went on: the server's 91 records are there but those of that frame
    assert report.summary.tls_connections == 1
    assert 80 < report.connections[0].records["server"].total < 91


@pytest.mark.parametrize("name", ["field-bug-70-tries.pcap", "clean-tls12-v6.pcapng"])
def test_segments_handed_on_are_frame_decodes(name, monkeypatch):
    """A packet the fused loop hands to the steps carries frame.decode's segment."""
    path = str(SAMPLES / name)
    with open_capture(path) as capture:
        decoded = {n: decode(lt, data, orig) for n, _, lt, data, orig in capture.frames()}
    placed = []

    class Checked(ConnectionTable):
        def place(self, frame, time, segment, wire=None):
            placed.append((frame, segment))
            if wire is not None:       # the wire key it came with is the segment's own
                src, dst, sport, dport = segment[:4]
                assert wire == wire_key(src, sport, dst, dport), frame
            return super().place(frame, time, segment, wire)

    monkeypatch.setattr(api_run, "ConnectionTable", Checked)
    analyze(path)
    assert len(placed) >= 4   # at least the SYNs and FINs
    for frame, segment in placed:
        assert segment == decoded[frame], frame


def _over_ethernet(cases):
    """test_frame's cases as Ethernet frames: those over IPv4 (link type 101) with an
    Ethernet header put before them, then the same with the IPv4 fragment field set
    (more fragments; offset 8 bytes). The ICMP echo has a ping's 56 bytes of data."""
    import test_frame
    frames = []
    for name, lt, hexstr, _ in cases:
        data = test_frame.h(hexstr)
        if lt == 101 and data[0] >> 4 == 4:
            data = test_frame.h(test_frame.ETH, "0800") + data
        elif lt != 1:
            continue
        if name == "icmp-echo":      # as ping sends it: 56 bytes of data
            data = data[:16] + (20 + 8 + 56).to_bytes(2, "big") + data[18:] + bytes(56)
        frames.append((name, data))
        if data[12:14] == b"\x08\x00":
            for frag in (b"\x20\x00", b"\x00\x01"):
                frames.append((name + "-fragment", data[:20] + frag + data[22:]))
    return frames


def test_frames_passed_over_are_those_decode_gives_nothing_for(tmp_path, monkeypatch):
    """The fused loop does not decode the UDP that is no tunnel, the ICMP that is no
    error and the IPv4 fragments it sees: it passes over exactly those of them that
    decode() makes no segment of, and takes the rest (tunnels, ICMP errors quoting
    TCP) as the steps do."""
    import test_frame
    from pcap_tls_split import loop
    frames = _over_ethernet(test_frame.CASES)
    names = [name for name, _ in frames]
    assert {"udp-other", "icmp-echo", "vxlan", "icmp-quoting-tcp", "vxlan-fragment"} <= set(names)
    path = tmp_path / "mixed.pcap"
    captures.write_pcap(path, [(1.0 + i / 100, 1, data, len(data)) for i, (_, data) in enumerate(frames)])
    decoded = []
    real = loop.decode

    def counted(linktype, data, orig):
        decoded.append(bytes(data))
        return real(linktype, data, orig)

    monkeypatch.setattr(loop, "decode", counted)
    (fused, rows, states, _), (steps, step_rows, step_states) = run_both(path, monkeypatch)
    assert fused == steps and rows == step_rows and states == step_states
    assert fused.inputs[0].tcp_connections >= 1
    decoded.clear()
    analyze(str(path), all_connections=True)
    for name, data in frames:
        segment = real(1, data, len(data))
        ip4 = data[12:14] == b"\x08\x00" and data[14] == 0x45
        fragment = ip4 and int.from_bytes(data[20:22], "big") & 0x3FFF
        if segment is not None and ip4 and data[23] != 6:
            assert data in decoded, name            # a tunnel or an ICMP error: decoded
        if name in ("udp-other", "icmp-echo") or fragment and data[23] != 6:
            assert segment is None and data not in decoded, name   # passed over
