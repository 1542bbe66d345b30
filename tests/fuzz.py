"""Seeded mutation fuzzing of the whole path, from capture bytes to exit status.

Each case takes a capture of samples/ or of the corpus and damages it: bytes
flipped, the file cut, a length that lies in a header (a pcap record's captured
or original length, a pcapng block's length at either end or a packet's
captured length, an IPv4 total length or header length, an IPv6 payload
length, a TCP data offset, a TLS record length), bytes dropped or repeated,
several of those stacked, then perhaps gzip-compressed and the compressed bytes
damaged too (a bit, a cut, the trailer). The result is read as a file or from
standard input in random pieces. What must hold:

- the exit status is 0, 1 or 2; nothing on stderr is a traceback or an
  internal error; each stderr line is ``pcap-tls-split: NAME: ...`` naming the
  input; on status 2 there is exactly one such line;
- no case runs longer than ``HANG_SECONDS``;
- a capture cut at byte N (plain or gzip-compressed) gives exactly the report
  and records of the frames wholly before N;
- a gzip-compressed capture, damaged or not, gives the report and records of
  the bytes zlib can decode of it (all of them up to the damage).

Case ``i`` of seed ``s`` is the same on every machine (its random generator is
seeded with ``"s:i"``), so ``python tests/fuzz.py --seed S --case I`` replays one.
``python tests/fuzz.py --seed 1 --cases 20000`` (``make fuzz SEED=1 CASES=20000``)
runs a campaign and writes each failing input with what went wrong to
``--out`` (``fuzz-failures/``). tests/test_fuzz.py runs a fixed set of cases.
"""

import argparse
import dataclasses
import gzip
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

import pcap_tls_split  # noqa: E402
from pcap_tls_split.cli import main  # noqa: E402

SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"
HANG_SECONDS = 60           # a case that takes longer is a hang
TLS_HEADER_TYPES = range(20, 25)


# -- where the lengths are: a capture's layout ---------------------------------------

@dataclasses.dataclass
class Field:
    """A length in a header: at ``offset`` of the file, ``size`` bytes, byte order."""

    offset: int
    size: int
    order: str
    what: str
    nibble: bool = False     # the high 4 bits of one byte (IPv4 IHL, TCP data offset)


@dataclasses.dataclass
class Layout:
    format: str
    boundaries: list        # file offsets after the file header and after each whole frame
    fields: list            # (pcap record; pcapng block, the section header first)


def _ip_fields(data, at, linktype, fields):
    """Length fields of the IP and TCP headers (and TLS records) of a frame whose
    bytes start at file offset ``at``."""
    ethertype, ip = None, None
    if linktype == 1 and len(data) >= 14:                  # Ethernet, 802.1Q
        ethertype, ip = struct.unpack_from(">H", data, 12)[0], 14
        while ethertype in (0x8100, 0x88A8) and len(data) >= ip + 4:
            ethertype, ip = struct.unpack_from(">H", data, ip + 2)[0], ip + 4
    elif linktype == 113 and len(data) >= 16:              # Linux cooked v1
        ethertype, ip = struct.unpack_from(">H", data, 14)[0], 16
    elif linktype == 276 and len(data) >= 20:              # Linux cooked v2
        ethertype, ip = struct.unpack_from(">H", data, 0)[0], 20
    elif linktype in (101, 228, 229, 12, 14) and data:     # raw IP
        ethertype, ip = (0x86DD if data[0] >> 4 == 6 else 0x0800), 0
    elif linktype == 0 and len(data) >= 4:                 # BSD loopback
        ethertype, ip = 0x0800, 4
    if ip is None or len(data) < ip + 20:
        return
    if ethertype == 0x0800 and data[ip] >> 4 == 4:
        ihl = (data[ip] & 15) * 4
        fields.append(Field(at + ip, 1, ">", "ipv4 header length", nibble=True))
        fields.append(Field(at + ip + 2, 2, ">", "ipv4 total length"))
        proto, tcp = data[ip + 9], ip + ihl
    elif ethertype == 0x86DD and len(data) >= ip + 40:
        fields.append(Field(at + ip + 4, 2, ">", "ipv6 payload length"))
        proto, tcp = data[ip + 6], ip + 40
    else:
        return
    if proto != 6 or len(data) < tcp + 20:
        return
    fields.append(Field(at + tcp + 12, 1, ">", "tcp data offset", nibble=True))
    payload = tcp + (data[tcp + 12] >> 4) * 4
    for i in range(payload, len(data) - 4):               # header-looking bytes: TLS lengths
        if data[i] in TLS_HEADER_TYPES and data[i + 1] == 3 and data[i + 2] <= 4:
            fields.append(Field(at + i + 3, 2, ">", "tls record length"))


def layout(data):
    """Where the frames end and where the lengths are, in an uncompressed capture."""
    fields, ends = [], []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        order = "<" if magic[0] in (0xD4, 0x4D) else ">"
        linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF if len(data) >= 24 else 1
        pos = 24
        ends.append(pos)
        while pos + 16 <= len(data):
            incl = struct.unpack_from(order + "I", data, pos + 8)[0]
            if pos + 16 + incl > len(data):
                break
            fields.append(Field(pos + 8, 4, order, "pcap captured length"))
            fields.append(Field(pos + 12, 4, order, "pcap original length"))
            _ip_fields(data[pos + 16:pos + 16 + incl], pos + 16, linktype, fields)
            pos += 16 + incl
            ends.append(pos)
        return Layout("pcap", ends, fields)
    pos, order, linktypes = 0, "<", []
    while pos + 12 <= len(data):
        btype = struct.unpack_from("<I", data, pos)[0]
        if btype == 0x0A0D0D0A:
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(data[pos + 8:pos + 12])
            if order is None:
                break
            linktypes = []
        btype, blen = struct.unpack_from(order + "II", data, pos)
        if blen < 12 or pos + blen > len(data):
            break
        fields.append(Field(pos + 4, 4, order, "pcapng block length"))
        fields.append(Field(pos + blen - 4, 4, order, "pcapng trailing block length"))
        if btype == 1 and blen >= 20:
            linktypes.append(struct.unpack_from(order + "H", data, pos + 8)[0])
        elif btype == 6 and blen >= 32:
            ifid, _, _, incl = struct.unpack_from(order + "IIII", data, pos + 8)
            fields.append(Field(pos + 20, 4, order, "pcapng captured length"))
            if ifid < len(linktypes):
                _ip_fields(data[pos + 28:pos + 28 + incl], pos + 28, linktypes[ifid], fields)
        pos += blen
        ends.append(pos)
    return Layout("pcapng", ends, fields)


_layouts = {}


def layout_of(source, data):
    """``layout(data)`` of a capture of the corpus, once."""
    if source not in _layouts:
        _layouts[source] = layout(data)
    return _layouts[source]


# -- the captures -------------------------------------------------------------------------

def captures(max_size=None):
    """(name, uncompressed bytes) of the samples and corpus captures, smallest first."""
    paths = sorted(SAMPLES.glob("*.pcap*"))
    if CORPUS.is_dir():
        paths += sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")
    out = []
    for path in paths:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if max_size is None or len(data) <= max_size:
            out.append((str(path.relative_to(ROOT.parent)), data))
    return sorted(out, key=lambda c: len(c[1]))


# -- mutations ----------------------------------------------------------------------------

INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 15, 16, 19, 20, 40, 255, 256, 0x3FFF, 0x4000,
               0x4800, 0x4801, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


def flip(rng, data, lay):
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 5, 20))):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return bytes(data), "flip"


def lie(rng, data, lay):
    if not lay.fields:
        return flip(rng, data, lay)
    field = rng.choice(lay.fields)
    if field.offset + field.size > len(data):
        return flip(rng, data, lay)
    old = int.from_bytes(data[field.offset:field.offset + field.size], "big" if field.order == ">" else "little")
    if field.nibble:
        value = (rng.randrange(16) << 4) | (data[field.offset] & 15)
        raw = bytes([value])
    else:
        value = rng.choice(INTERESTING + (old - 1, old + 1, old * 2, old // 2, rng.randrange(1 << (8 * field.size))))
        value %= 1 << (8 * field.size)
        raw = value.to_bytes(field.size, "big" if field.order == ">" else "little")
    return data[:field.offset] + raw + data[field.offset + field.size:], f"lie {field.what}"


def splice(rng, data, lay):
    at = rng.randrange(len(data))
    size = rng.choice((1, 3, 16, 100, 2000))
    if rng.random() < 0.5:
        return data[:at] + data[at + size:], "drop bytes"
    return data[:at] + data[at:at + size] + data[at:], "repeat bytes"


def cut(rng, data, lay):
    return data[:rng.randrange(len(data) + 1)], "cut"


def compressed(rng, data):
    """gzip, and perhaps damage to the compressed bytes."""
    packed = bytearray(gzip.compress(data, compresslevel=rng.choice((1, 6, 9)), mtime=0))
    what = "gzip"
    damage = rng.random()
    if damage < 0.25:
        packed[rng.randrange(10, len(packed))] ^= rng.randrange(1, 256)
        what += " flipped"
    elif damage < 0.4:
        packed = packed[:rng.randrange(len(packed) + 1)]
        what += " cut"
    elif damage < 0.5:
        packed[-8:] = bytes(8) if rng.random() < 0.5 else bytes(b ^ 0xFF for b in packed[-8:])
        what += " bad trailer"
    return bytes(packed), what


@dataclasses.dataclass
class Case:
    number: int
    source: str
    data: bytes
    steps: list
    stdin: bool
    cut_at: int = None       # a pure cut of the clean capture: where (in its bytes)
    compressed: bool = False


def make_case(seed, number, corpus, stdin_share=0.05):
    rng = random.Random(f"{seed}:{number}")
    source, clean = rng.choice(corpus)
    lay = layout_of(source, clean)
    data, steps, cut_at = clean, [], None
    kind = rng.random()
    if kind < 0.2:                                  # a pure cut: compared with the clean prefix
        data, _ = cut(rng, clean, lay)
        cut_at, steps = len(data), ["cut"]
    else:
        for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
            mutate = rng.choice((flip, lie, lie, lie, splice, cut))
            data, what = mutate(rng, data, lay) if data else (data, "empty")
            steps.append(what)
    packed = False
    if rng.random() < 0.2:
        if cut_at is not None and rng.random() < 0.5:
            # the compressed stream cut: what decompresses is a prefix of the clean bytes
            full = gzip.compress(clean, compresslevel=rng.choice((1, 6, 9)), mtime=0)
            data = full[:rng.randrange(len(full) + 1)]
            cut_at = len(zlib.decompressobj(31).decompress(data))
            steps = ["gzip cut"]
        else:
            data, what = compressed(rng, data)
            steps.append(what)
            cut_at = None
        packed = True
    return Case(number, source, data, steps, rng.random() < stdin_share, cut_at, packed)


# -- running a case -----------------------------------------------------------------------

class Hang(BaseException):
    """(Not an Exception: nothing under test may catch it.)"""


def _alarm(signum, frame):
    raise Hang(f"took more than {HANG_SECONDS} s")


def _check_stderr(name, status, stderr, problems):
    lines = stderr.splitlines()
    if "Traceback" in stderr:
        problems.append("a traceback on stderr")
    if "internal error" in stderr:
        problems.append("an internal error: " + next(l for l in lines if "internal error" in l))
    for line in lines:
        if not line.startswith(f"pcap-tls-split: {name}: "):
            problems.append(f"stderr line not naming the input: {line[:200]!r}")
    if status == 2 and len(lines) != 1:
        problems.append(f"status 2 with {len(lines)} stderr lines")
    if status not in (0, 1, 2):
        problems.append(f"exit status {status}")


def _comparable(report, rows, path):
    d = report.to_dict()
    d.pop("tool")
    for inp in d["inputs"]:
        inp.pop("errors")
        inp.pop("path")
    text = json.dumps(d, sort_keys=True).replace(json.dumps(path)[1:-1], "FILE")
    return text, [dataclasses.replace(r, file="FILE") for r in rows]


def run_case(case, workdir):
    """What is wrong with a case: a list of problems (empty: all held)."""
    problems = []
    path = os.path.join(workdir, f"case-{case.number}.pcap")
    with open(path, "wb") as f:
        f.write(case.data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        if case.stdin:
            status, stderr = _through_stdin(case)
            _check_stderr("<stdin>", status, stderr, problems)
        else:
            result = CliRunner().invoke(main, ["analyze", "--format", "json", "--all", "-j", "1", path])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                problems.append(f"exception: {type(result.exception).__name__}: {result.exception}")
            _check_stderr(path, result.exit_code, result.stderr, problems)
            if result.exit_code in (0, 1):
                json.loads(result.stdout)
        if case.cut_at is not None and not problems:
            _check_cut(case, path, workdir, problems)
        if case.compressed and not problems:
            _check_compressed(case, path, workdir, problems)
    except Hang as exc:
        problems.append(f"hang: {exc}")
    except Exception as exc:       # the harness itself, or a JSON report that is not one
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.unlink(path)
    return problems


def _analysed(path, rows):
    """The library's report of ``path`` (an unreadable input reported, not raised)."""
    return pcap_tls_split.analyze(path, all_connections=True, on_record=rows.append, errors="report")


def _against(path, data, other):
    """``path``'s report, whether it is the report of ``data`` (written to ``other``
    for the while), and that report."""
    with open(other, "wb") as f:
        f.write(data)
    try:
        got, want = [], []
        report = _analysed(path, got)
        other_report = _analysed(other, want)
    finally:
        os.unlink(other)
    return report, _comparable(report, got, path) == _comparable(other_report, want, other), other_report


def _check_cut(case, path, workdir, problems):
    """The cut capture against the frames wholly before the cut."""
    clean = dict(captures_cache)[case.source]
    boundaries = layout_of(case.source, clean).boundaries
    if not boundaries or case.cut_at < boundaries[0]:
        return                               # the file header cut: nothing to compare
    whole = max(b for b in boundaries if b <= case.cut_at)
    cut_report, same, _ = _against(path, clean[:whole], os.path.join(workdir, f"case-{case.number}-prefix.pcap"))
    if not same:
        problems.append(f"a cut at byte {case.cut_at} differs from the {whole} bytes of whole frames")
    if case.cut_at > whole and not cut_report.inputs[0].errors and not case.compressed:
        problems.append("a cut inside a frame is not reported")


def salvage(packed):
    """The bytes zlib can decode of a gzip stream before its damage (one member)."""
    d, out = zlib.decompressobj(31), []
    for i in range(len(packed)):
        try:
            out.append(d.decompress(packed[i:i + 1]))
        except zlib.error:
            break
        if d.eof:
            break
    return b"".join(out)


def _check_compressed(case, path, workdir, problems):
    """A gzip-compressed capture against the bytes zlib decodes of it, uncompressed."""
    packed_report, same, plain_report = _against(path, salvage(case.data),
                                                 os.path.join(workdir, f"case-{case.number}-plain.pcap"))
    if plain_report.inputs[0].format is None and packed_report.inputs[0].format is None:
        return                               # neither has a whole file header
    if not same:
        problems.append("the compressed capture differs from the bytes zlib decodes of it")


captures_cache = []


def _through_stdin(case):
    """The CLI in a process, the case's bytes on its standard input in random pieces."""
    rng = random.Random(f"stdin:{case.number}")
    process = subprocess.Popen([sys.executable, "-m", "pcap_tls_split", "analyze", "--format", "json",
                                "-"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    err = io.BytesIO()
    try:
        at = 0
        while at < len(case.data):
            size = rng.choice((1, 7, 100, 1500, 65536))
            process.stdin.write(case.data[at:at + size])
            process.stdin.flush()
            at += size
            if rng.random() < 0.05:
                time.sleep(0.01)
        process.stdin.close()
    except BrokenPipeError:                   # it stopped reading (a file it cannot read)
        pass
    process.stdin = None                      # (closed: not for communicate)
    out, stderr = process.communicate(timeout=HANG_SECONDS)
    err.write(stderr)
    if process.returncode in (0, 1):
        json.loads(out)
    return process.returncode, err.getvalue().decode(errors="replace")


def run(seed, cases, max_size=None, out=None, first=0, progress=False, stdin_share=0.05):
    """Run cases ``first`` .. ``first + cases - 1`` of ``seed``: [(case, problems)] of the failing ones."""
    if not captures_cache:
        captures_cache.extend(captures(max_size))
    failures = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pcap-tls-split-fuzz-") as workdir:
        for number in range(first, first + cases):
            case = make_case(seed, number, captures_cache, stdin_share)
            problems = run_case(case, workdir)
            if problems:
                failures.append((case, problems))
                if out is not None:
                    _keep(case, problems, seed, out)
            if progress and (number - first + 1) % 100 == 0:
                print(f"{number - first + 1} cases, {len(failures)} failing, "
                      f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return failures


def _keep(case, problems, seed, out):
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, f"seed{seed}-case{case.number}")
    with open(base + ".pcap", "wb") as f:
        f.write(case.data)
    with open(base + ".txt", "w") as f:
        f.write(f"source: {case.source}\nsteps: {', '.join(case.steps)}\nstdin: {case.stdin}\n"
                f"replay: python tests/fuzz.py --seed {seed} --case {case.number}\n")
        f.writelines(f"problem: {p}\n" for p in problems)


def describe(case):
    how = "stdin in pieces" if case.stdin else "file"
    return f"case {case.number}: {case.source}, {' + '.join(case.steps)} ({len(case.data)} bytes, {how})"


def cli():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--case", type=int, default=None, help="replay this one case")
    parser.add_argument("--max-size", type=int, default=None, help="skip captures bigger than this")
    parser.add_argument("--out", default="fuzz-failures", help="where failing inputs are written")
    args = parser.parse_args()
    if args.case is not None:
        failures = run(args.seed, 1, args.max_size, args.out, first=args.case)
        if not captures_cache:
            return 2
        print(describe(make_case(args.seed, args.case, captures_cache)))
    else:
        failures = run(args.seed, args.cases, args.max_size, args.out, progress=True)
    for case, problems in failures:
        print(describe(case))
        for problem in problems:
            print(f"    {problem}")
    total = 1 if args.case is not None else args.cases
    print(f"seed {args.seed}: {total} case(s), {len(failures)} failing"
          + (f" (inputs in {args.out}/)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(cli())
