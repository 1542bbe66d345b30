"""Command line: click wiring over the library API (``pcap_tls_split.analyze``).

What a person reads goes to standard output; every error and warning goes to
standard error, one line each, in every format.
"""

import enum
import functools
import importlib
import os
import shutil
import signal
import sys
import time
import traceback

import click

from ._version import __version__, build
from .api import ClusterUnavailable, analyze as run_analysis, expand_inputs
from .api.inputs import not_regular
from .findings import CODES, SEVERITIES, Severity
from .report import render


class Exit(enum.IntEnum):
    """Exit status (SIGNATURES.md)."""

    OK = 0          # nothing at or above --fail-on
    FINDINGS = 1    # a finding at or above --fail-on
    ERROR = 2       # a usage error, or an input that could not be read at all


FORMATS = ("table", "json", "jsonl", "csv")
ANALYZE_FORMATS = FORMATS + ("html",)
PROG = "pcap-tls-split"


class Failure(click.ClickException):
    """The run could not be done (exit status 2, not 1: 1 means findings)."""

    exit_code = 2


def warn(message):
    """One line on standard error."""
    click.echo(f"{PROG}: {message}", err=True)


def table_width(option):
    """The width tables fit: ``--width`` (0: no limit), else the terminal's, else
    $COLUMNS, else 120 (in a pipe)."""
    if option is not None:
        return option
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else render.DEFAULT_PIPE_WIDTH


def reader_gone():
    """Standard output's reader went away (``| head``): stop quietly, status 0."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere, quietly
    except (OSError, ValueError):
        pass
    sys.exit(Exit.OK)


class Output:
    """Standard output for the writers: clears the progress bar before it writes, and
    ends the run quietly when the reader has gone away."""

    def __init__(self, session):
        self.session = session
        self.out = sys.stdout

    def write(self, text):
        self.session.clear_progress()
        try:
            return self.out.write(text)
        except BrokenPipeError:
            reader_gone()

    def flush(self):
        try:
            self.out.flush()
        except BrokenPipeError:
            reader_gone()


class Progress:
    """click's progress bar on standard error: bytes of the total when every input has
    a size, else packets read; files done. ``for_terminal`` gives one only when
    standard error is a terminal; ``clear`` takes it off the screen before output."""

    EVERY = 0.1       # seconds between two redraws

    def __init__(self, paths):
        self.files = len(paths)
        self.sizes = {p: os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p)}
        total = sum(self.sizes.values())
        self.total = total if len(self.sizes) == len(paths) and total else None
        self.done_files = 0
        self.done_bytes = 0
        self.done_packets = 0
        self.packets = 0
        self.drawn = 0.0
        self.shown = False
        sized = self.total is not None
        self.bar = click.progressbar(iterable=None if sized else (x for x in ()), length=self.total,
                                     file=sys.stderr, width=30, show_percent=sized, show_eta=sized,
                                     bar_template="[%(bar)s]  %(info)s", item_show_func=self._text)

    @classmethod
    def for_terminal(cls, paths):
        """A bar when standard error is a terminal, else None (never in pipes or logs)."""
        if not sys.stderr.isatty() or not paths:
            return None
        return cls(paths)

    def _text(self, _item):
        files = f"{self.done_files}/{self.files} files" if self.files > 1 else ""
        if self.total is not None:
            said = f"{self.bar.pos / 1e6:,.0f}/{self.total / 1e6:,.0f} MB"
        else:
            said = f"{self.done_packets + self.packets:,} packets"
        return ", ".join(x for x in (said, files) if x)

    def reading(self, path, done, total, packets):
        """Called by the analysis now and then: ``done`` bytes of ``path`` read, ``packets``."""
        self.packets = packets
        if self.total is not None:
            self._move(self.done_bytes + min(done, self.sizes.get(path, done)))
        else:
            self._move(self.done_packets + packets)

    def file_done(self, path):
        self.done_files += 1
        self.done_bytes += self.sizes.get(path, 0)
        self.done_packets += self.packets
        self.packets = 0
        self._move(self.done_bytes if self.total is not None else self.done_packets, force=True)

    def _move(self, position, force=False):
        if position > self.bar.pos:
            self.bar.make_step(position - self.bar.pos)   # position and ETA
        now = time.monotonic()
        if force or now - self.drawn >= self.EVERY:
            self.drawn = now
            try:
                width = os.get_terminal_size(sys.stderr.fileno()).columns - 1
            except (OSError, ValueError, AttributeError):
                width = 0
            if width < 40:            # a terminal that does not say its size
                width = 79
            sys.stderr.write("\r" + self.bar.format_progress_line()[:width] + "\033[K")
            sys.stderr.flush()
            self.shown = True

    def clear(self):
        """Take the bar off the screen (it comes back on the next update)."""
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def _kind(path):
    """`` (a named pipe (FIFO), not opened)`` for a skipped entry that is no regular file."""
    what = not_regular(path)
    return f" ({what}, not opened)" if what else ""


def skipped_note(skipped, width):
    """One line naming the files a directory walk skipped (as many as fit ``width``)."""
    try:
        where = os.path.commonpath(skipped) if len(skipped) > 1 else os.path.dirname(skipped[0])
    except ValueError:            # absolute and relative paths mixed
        where = ""
    names = [(os.path.relpath(p, where) if where else p) + _kind(p) for p in skipped]
    head = f"skipped {len(skipped)} file(s) in {where or '.'}{os.sep}, not captures: "
    room = width - len(PROG) - 2 - len(head)
    said = ", ".join(names)
    for shown in range(len(names) - 1, 0, -1):
        if len(said) <= room:
            break
        said = ", ".join(names[:shown]) + f" and {len(names) - shown} more"
    return head + said


class Session:
    """What one command run shares: its inputs, progress bar, width, scale."""

    def __init__(self, quiet, jobs, dask, width):
        self.quiet = quiet
        self.jobs = jobs or os.cpu_count() or 1
        self.asked_jobs = jobs        # -j as given (None: not given)
        self.dask = dask
        self.width = table_width(width)
        self.asked_width = width      # --width as given (None: not given)
        self.progress = None
        self.out = Output(self)

    def inputs(self, paths):
        """The files to read: directories walked, each file once; a note on standard
        error for each file a walk skips (not with -q)."""
        skipped = []
        files = list(expand_inputs(paths, skipped))
        if skipped and not self.quiet:
            warn(skipped_note(skipped, self.width or 10 ** 6))
        if not files:
            raise Failure(f"no capture to read in {', '.join(paths)}")
        if len(files) == 1 and self.asked_jobs is None:
            # one capture: split across workers only when -j asks (each worker keeps
            # a connection table of its own: more memory for the speed)
            self.jobs = 1
        if not self.quiet:
            self.progress = Progress.for_terminal(files)
        return files

    @property
    def scale(self):
        return {"jobs": self.jobs, "dask": self.dask, "progress": self.progress}

    def clear_progress(self):
        if self.progress is not None:
            self.progress.clear()

    def close(self):
        self.clear_progress()
        self.progress = None


def common_options(func=None, *, formats=FORMATS):
    """Options shared by the commands that read captures (``formats``: the --format
    choices; None: no --format)."""
    if func is None:
        return functools.partial(common_options, formats=formats)
    func = _run_options(func)
    if formats is not None:
        func = click.option("--format", "fmt", type=click.Choice(formats), default="table",
                            show_default=True, help="Output format.")(func)
    return func


def _run_options(func):
    @click.argument("inputs", nargs=-1, metavar="CAPTURE...")
    @click.option("--stream", type=int, default=None, metavar="N",
                  help="Only Wireshark's tcp.stream N.")
    @click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                  metavar="SECONDS",
                  help="Finish connections idle this long (capture time; default 600).")
    @click.option("--width", type=click.IntRange(0), default=None, metavar="N",
                  help="Fit tables to N characters (0: no limit). Default: the terminal's width; "
                       "in a pipe $COLUMNS, else 120.")
    @click.option("-j", "--jobs", type=click.IntRange(1), default=None, metavar="N",
                  help="Analyse N files at once in worker processes (default: the number of CPUs), "
                       "or, given for one capture of 32 MB or more, split its connections across N.")
    @click.option("--dask", metavar="ADDRESS", default=None,
                  help="Send the files to this Dask scheduler (e.g. tcp://10.0.0.5:8786); "
                       "its workers must see the same paths.")
    @click.option("-q", "--quiet", is_flag=True,
                  help="No progress bar, no note of the files a directory walk skips.")
    @click.option("--debug", is_flag=True, help="Show a traceback on internal errors.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.pop("debug")
        session = Session(kwargs.pop("quiet"), kwargs.pop("jobs"), kwargs.pop("dask"),
                          kwargs.pop("width"))
        kwargs["session"] = session
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            reader_gone()
        except KeyboardInterrupt:
            session.close()
            sys.exit(130)
        except ClusterUnavailable as exc:
            raise Failure(str(exc))
        except Exception as exc:
            if debug:
                session.close()
                traceback.print_exc()
            raise Failure(f"internal error: {type(exc).__name__}: {exc} "
                          "(run with --debug for the traceback)")
        finally:
            session.close()
    return wrapper


def need_inputs(inputs):
    if not inputs:
        raise click.UsageError("give a capture file, a directory, or - for standard input")


def keylog_option(func):
    """--keylog: decrypt through tshark with an SSLKEYLOGFILE key log."""
    return click.option("--keylog", type=click.Path(exists=True, dir_okay=False), default=None,
                        metavar="FILE",
                        help="TLS key log (SSLKEYLOGFILE format): tshark decrypts the records "
                             "and the output says what they held.")(func)


class Commands(click.Group):
    """The command group; the commands in LAZY are imported when used (start-up time)."""

    LAZY = {"lab": ("pcap_tls_split.lab.cli", "lab")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx, name):
        if name in self.LAZY:
            module, attr = self.LAZY[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


def _wireshark():
    """The tshark/pyshark module, imported when a command needs it."""
    from . import wireshark
    return wireshark


def _show_version(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG} {__version__} ({build()})")
        ctx.exit()


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version and whether the per-packet modules run compiled, and exit.")
def main():
    """Locate TLS records against TCP segments and flag premature closes.

    CAPTURE is a pcap or pcapng file (gzip-compressed or not), a directory
    (searched recursively) or - for standard input.
    """


@main.command()
@common_options(formats=ANALYZE_FORMATS)
@click.option("--all", "all_connections", is_flag=True,
              help="List every TLS connection, not only those with findings.")
@click.option("--fail-on", type=click.Choice(list(reversed(SEVERITIES)) + ["never"]), default="high",
              show_default=True, help="Exit 1 when a finding is at or above this severity.")
@click.option("--min-severity", type=click.Choice(list(reversed(SEVERITIES))), default=None,
              help="Show only findings at or above this severity (default: low in the table, "
                   "info with -v; every finding in json, jsonl and csv).")
@click.option("-v", "--verbose", is_flag=True,
              help="Table: each connection's SNI, ALPN, cipher, alerts and Community ID, why a "
                   "confidence is not high, each finding's Wireshark filter; info findings too.")
@click.option("-i", "--interface", metavar="IFACE", default=None,
              help="Capture live on this interface (tcpdump or dumpcap) until Ctrl-C.")
@click.option("-f", "--filter", "bpf", metavar="BPF", default=None,
              help="With -i: a capture filter (tcpdump syntax), e.g. 'tcp port 443'.")
@keylog_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE", help="Write the report to FILE instead of standard output.")
@click.option("--by", type=click.Choice(["server", "client"]), default=None,
              help="Instead of the findings: per server (endpoint and SNI) how its responses "
                   "were cut into records, segments and pauses; per client address how many "
                   "connections it closed prematurely, with which codes.")
def analyze(inputs, fmt, stream, idle_timeout, session, all_connections, fail_on, min_severity,
            verbose, interface, bpf, keylog, output, by):
    """Flag premature-close signatures, one row per finding, then a summary.

    The table groups the findings by connection (a line naming it, then a row per
    finding: time of day in UTC, frame, side, severity, code, message); a
    severity followed by ? (medium) or ?? (low) has a confidence below high; a
    connection the capture saw only in part is marked [capture: ...].

    With --keylog, tshark decrypts the records around each finding and the
    finding says what they held (evidence app_data). With -i, the capture is
    live: each connection is reported as it ends (--format jsonl), and Ctrl-C
    stops it with the summary.

    --format html writes one self-contained page: the summary, the findings and
    a picture of every listed connection (the captures are read a second time
    for those). --by server|client writes a tally instead of the findings.

    Exit status: 0 nothing at or above --fail-on, 1 a finding at or above it,
    2 a usage error or an input that could not be read at all.
    """
    if interface is not None and inputs:
        raise click.UsageError("give either -i IFACE or captures to read, not both")
    if bpf is not None and interface is None:
        raise click.UsageError("-f BPF is a capture filter for -i IFACE")
    if interface is None:
        need_inputs(inputs)
    if by is not None:
        return _by(by, inputs, fmt, stream, idle_timeout, session, fail_on, keylog, output)
    if fmt == "html" and interface is not None:
        raise click.UsageError("--format html reads the captures twice: not with -i")
    view = render.View(width=session.width, verbose=verbose,
                       min_severity=Severity(min_severity) if min_severity else None,
                       all_connections=all_connections)
    out = session.out if output in (None, "-") else _output(output)
    # json and jsonl: each connection written (or spooled) as it ends, none held
    listed = render.Listed()
    document = render.JsonDocument(view) if fmt == "json" else None

    # what is written of a connection is made where its report is (with -j, in the
    # worker: only that comes back)
    prepare = functools.partial(render.shown_of, view=view, line=fmt in ("json", "jsonl"))

    def on_connection(shown):
        listed.add(shown)
        if document is not None:
            document.add(shown)
        elif shown.line is not None:
            out.write(shown.line)
            out.flush()
    keep = fmt not in ("json", "jsonl") or keylog is not None
    options = dict(all_connections=all_connections, stream=stream, idle_timeout=idle_timeout,
                   on_connection=on_connection, prepare=prepare, errors="report",
                   keep_connections=keep)
    if interface is not None:
        result = _live(interface, bpf, session, options)
    else:
        paths = session.inputs(inputs)
        options.update(session.scale)
        result = None
        if keylog:
            try:
                # (its reports come once the plaintext is added: made into Shown here)
                result = _wireshark().analyze(paths, keylog=keylog, **dict(
                    options, prepare=None, on_connection=lambda conn: on_connection(prepare(conn))))
            except _wireshark().TsharkMissing as exc:
                _plaintext_not_added(exc)
        if result is None:
            result = run_analysis(paths, **options)
    session.close()
    if fmt == "html":
        _view().html.write(result, out, idle_timeout)
    elif document is not None:
        document.write(result, out)
    else:
        render.RENDERERS[fmt](result, out, view)
    out.flush()
    _input_errors(result.inputs)
    _stream_note(stream, result.inputs, listed.count,
                 "not a TLS connection" if all_connections else "no finding there (--all lists it if it is TLS)")
    _exit_for(result.unreadable, listed.worst, fail_on)


def _by(by, inputs, fmt, stream, idle_timeout, session, fail_on, keylog, output):
    """analyze --by server|client: the tally instead of the findings."""
    if fmt == "html":
        raise click.UsageError("--by writes table, json, jsonl or csv, not html")
    if keylog:
        raise click.UsageError("--by does not read a key log: leave out --keylog")
    paths = session.inputs(inputs)
    out = session.out if output in (None, "-") else _output(output)
    fleet = _view().fleet.tally(paths, stream=stream, idle_timeout=idle_timeout, **session.scale)
    session.close()
    _view().fleet.render(fleet, by, fmt, out, session.width if out is session.out else 0)
    out.flush()
    _input_errors(fleet.inputs)
    _exit_for(fleet.unreadable, fleet.worst, fail_on)


def _exit_for(unreadable, worst, fail_on):
    """analyze's exit status: inputs not read, else the worst finding against --fail-on."""
    if unreadable:
        sys.exit(Exit.ERROR)
    if fail_on != "never" and worst is not None and worst >= Severity(fail_on):
        sys.exit(Exit.FINDINGS)
    sys.exit(Exit.OK)


def _output(path):
    """The file -o names (opened now: a bad path is a usage error)."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}")


def _live(interface, bpf, session, options):
    """Capture on ``interface`` into our standard input and analyse it until the capturer
    ends (Ctrl-C: it is stopped, and the report is written as for a file)."""
    from .api.live import LiveCapture, LiveUnavailable
    live = LiveCapture(interface, bpf)
    previous = signal.getsignal(signal.SIGINT)

    def interrupted(signum, frame):
        if live.proc is None or live.proc.poll() is not None:
            raise KeyboardInterrupt
        live.interrupt()    # the capturer writes out what it has; its end is our input's end

    try:
        pipe = live.start()
        os.dup2(pipe.fileno(), 0)       # the capture is our standard input
        pipe.close()
        if sys.stderr.isatty() and not session.quiet:
            warn(f"capturing on {interface} with {live.tool}; Ctrl-C stops and reports")
        signal.signal(signal.SIGINT, interrupted)
        if not session.quiet:
            session.progress = Progress.for_terminal(["-"])
        result = run_analysis(["-"], jobs=1, progress=session.progress, **options)
    except LiveUnavailable as exc:
        raise Failure(str(exc))
    finally:
        signal.signal(signal.SIGINT, previous)
        live.stop()
    failure = live.failure()
    if failure and not result.inputs[0].packets:
        raise Failure(f"{live.tool} could not capture on {interface}: {failure}")
    if failure:
        warn(f"{live.tool} stopped capturing on {interface}: {failure}")
    if live.drops():
        warn(f"{live.tool} dropped {live.drops()} packet(s): the report may miss some")
    return result


@main.command()
@common_options
@keylog_option
def records(inputs, fmt, stream, idle_timeout, session, keylog):
    """Every TLS record against the segments (frames) that carried it.

    With --keylog, tshark decrypts them and a plaintext column shows the first
    line of each (or Wireshark's description of a record that is not
    application data; ? when it could not be decrypted).
    """
    need_inputs(inputs)
    paths = session.inputs(inputs)
    out = session.out
    if keylog:
        try:
            texts, inputs_read = _wireshark().records(paths, keylog=keylog, stream=stream,
                                                      idle_timeout=idle_timeout)
        except _wireshark().TsharkMissing as exc:
            _plaintext_not_added(exc)
        else:
            texts.sort(key=lambda t: (t.row.file, t.row.stream, t.row.side != "client", t.row.index))
            session.close()
            _wireshark().render_records(texts, fmt, out, width=session.width)
            out.flush()
            _input_errors(inputs_read)
            _stream_note(stream, inputs_read, texts, "no TLS record there")
            sys.exit(Exit.ERROR if any(i.format is None for i in inputs_read) else Exit.OK)
    rows = []
    streaming = fmt == "jsonl"
    found = []
    if streaming:
        def on_record(row):
            if not found:
                found.append(True)
            out.write(render.record_line(row))
    else:
        on_record = rows.append
    result = run_analysis(paths, stream=stream, idle_timeout=idle_timeout, on_record=on_record,
                          errors="report", evaluate=False, **session.scale)
    session.close()
    if not streaming:
        rows.sort(key=lambda r: (r.file, r.stream, r.side != "client", r.index))
        render.render_records(rows, fmt, out, width=session.width)
    out.flush()
    _input_errors(result.inputs)
    _stream_note(stream, result.inputs, rows or found, "no TLS record there")
    sys.exit(Exit.ERROR if result.unreadable else Exit.OK)


@main.command()
@common_options
@click.option("--differences", is_flag=True,
              help="Show only the connections where the two views differ.")
def verify(inputs, fmt, stream, idle_timeout, session, differences):
    """Our TLS records and closes against Wireshark's (tshark), per connection.

    tshark reads each capture again, decoding as TLS the ports where we found
    TLS from the first byte, and the two views are compared per connection and
    side: every record (offset, content type, length), the first FIN and the
    first RST. A table per connection says where they first differ.

    Exit status: 0 all agree, 1 a connection differs, 2 tshark missing, a usage
    error, or an input that could not be read (by us or by tshark).
    """
    need_inputs(inputs)
    paths = session.inputs(inputs)
    session.close()
    try:
        result = _wireshark().verify(paths, stream=stream, idle_timeout=idle_timeout,
                                     jobs=session.jobs)
    except _wireshark().TsharkMissing as exc:
        warn(f"verify: {exc}")
        sys.exit(Exit.ERROR)
    _wireshark().render_verify(result, fmt, session.out, width=session.width,
                               differences=differences)
    session.out.flush()
    _input_errors(result.inputs)
    _stream_note(stream, result.inputs, result.connections, "not a TLS connection")
    if result.unreadable:
        sys.exit(Exit.ERROR)
    sys.exit(Exit.OK if result.agree else Exit.FINDINGS)


def _view():
    """The pictures and the extract, imported when a command needs them."""
    from . import view
    return view


def selection_options(func):
    """--finding and --min-severity: which connections ``show`` and ``extract`` take."""
    func = click.option("--min-severity", type=click.Choice(list(reversed(SEVERITIES))), default="medium",
                        show_default=True,
                        help="Without --stream or --finding: the connections with a finding at or "
                             "above this severity.")(func)
    return click.option("--finding", "code", type=click.Choice(sorted(CODES)), default=None,
                        metavar="CODE", help="The connections with a finding of this code "
                                             "(close_before_pending_records...).")(func)


@main.command()
@common_options(formats=None)
@selection_options
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour: auto is on a terminal only.")
def show(inputs, stream, idle_timeout, session, code, min_severity, color):
    """A ladder diagram of a connection: client left, server right, time down.

    One line per packet that matters, each TLS record against the segments
    that carried it, pure ACKs counted, pauses, the first close with its reach,
    the peer's records beyond it marked pending (LOST when the closer then
    reset), and the findings. --stream N draws that connection (of each
    CAPTURE); without it, every connection with a finding of --finding CODE, or
    at or above --min-severity.

    Exit status: 0 drawn (or nothing to draw), 2 a usage error, an input that
    could not be read, or no connection with that stream number.
    """
    need_inputs(inputs)
    view = _view()
    paths = session.inputs(inputs)
    out = session.out
    if session.asked_width and session.asked_width < view.ladder.MIN_WIDTH:
        raise click.BadParameter(f"a ladder needs {view.ladder.MIN_WIDTH} columns or more (0: no limit)",
                                 param_hint="--width")
    width = max(view.ladder.MIN_WIDTH, session.width) if session.width else 200
    painted = color == "always" or (color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
                                     and os.environ.get("TERM") != "dumb")
    chars = view.UNICODE
    try:
        "".join(chars.values()).encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        chars = view.ASCII
    try:
        choice = view.choose(paths, stream=stream, code=code, min_severity=min_severity,
                             idle_timeout=idle_timeout, **session.scale)
    except view.StdinTwice as exc:
        raise Failure(str(exc))
    drawn = view.ladder.ladders(choice, width, painted, chars, idle_timeout)
    session.close()                   # before the pictures: the bar must not cut into them
    for error in choice.errors + drawn.errors:
        warn(error)
    for i, lines in enumerate(drawn.details):
        if i:
            out.write("\n")
        out.write("\n".join(lines) + "\n")
    if drawn.left_out:
        out.write(f"\n{drawn.left_out} more connection(s) not drawn: give --stream N\n")
    if drawn.details:
        out.write("\n" + "\n".join(view.ladder.legend(width)) + "\n")
    elif stream is None:
        which = f"a {code} finding" if code else f"a finding at or above {min_severity}"
        out.write(f"no connection with {which}\n")
    unreadable = drawn.unreadable + (len(choice.report.unreadable) if choice.report else 0)
    sys.exit(Exit.ERROR if unreadable or (stream is not None and not drawn.details) else Exit.OK)


@main.command()
@common_options
@selection_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True,
              metavar="FILE", help="The pcapng to write.")
@keylog_option
def extract(inputs, fmt, stream, idle_timeout, session, code, min_severity, output, keylog):
    """The packets of the flagged connections, as one small pcapng for a bug report.

    Takes the connections with a finding at or above --min-severity (or of
    --finding CODE, or --stream N of each CAPTURE) and writes all their frames
    to FILE, in capture order, each finding's message as a comment on the frame
    it points at (Wireshark: frame.comment, Expert Info). With --keylog, the key
    log lines of those connections are embedded (a Decryption Secrets Block):
    Wireshark decrypts from FILE alone. Wireshark numbers the connections from
    tcp.stream 0 again in FILE: the table says which is which.

    Exit status: 0 written (or nothing to write), 2 a usage error, an input
    that could not be read, no connection with that stream number, or FILE
    cannot be written.
    """
    need_inputs(inputs)
    view = _view()
    out = session.out
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise Failure(f"cannot write {output}: {folder} is not a folder one can write to")
    try:
        done = view.extract.extract(session.inputs(inputs), output, stream=stream, code=code,
                                    min_severity=min_severity, keylog=keylog,
                                    idle_timeout=idle_timeout, **session.scale)
    except view.StdinTwice as exc:
        raise Failure(str(exc))
    except (view.extract.KeyLogError, OSError) as exc:
        raise Failure(str(exc))
    session.close()
    for error in done.errors:
        warn(error)
    if done.connections:
        view.extract.render(done, fmt, out, session.width)
    elif not done.unreadable:
        which = (f"tcp.stream {stream}" if stream is not None else f"a {code} finding" if code
                 else f"a finding at or above {min_severity}")
        warn(f"no connection with {which}: {output} not written")
    sys.exit(Exit.ERROR if done.unreadable or (stream is not None and not done.connections) else Exit.OK)


def _plaintext_not_added(exc):
    warn(f"--keylog: {exc}; the plaintext could not be added")


def _input_errors(inputs):
    for inp in inputs:
        for error in inp.errors:
            warn(error)


def _stream_note(stream, inputs, found, what):
    """--stream N that matched nothing: say so (and whether the stream exists at all)."""
    if stream is None or found:
        return
    streams = max((i.tcp_connections for i in inputs), default=0)
    if stream < 0 or stream >= streams:
        have = ("no TCP connection" if not streams else "only stream 0" if streams == 1
                else f"streams 0 to {streams - 1}")
        warn(f"--stream {stream}: no such connection (the input has {have})")
    else:
        warn(f"--stream {stream}: {what}")


if __name__ == "__main__":
    main()
