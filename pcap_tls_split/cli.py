"""Command line: click wiring over the library API (``pcap_tls_split.analyze``)."""

import enum
import functools
import importlib
import os
import shutil
import sys
import time
import traceback

import click

from ._version import __version__
from .api import ClusterUnavailable, analyze as run_analysis, expand_inputs
from .findings import CODES, SEVERITIES, Severity
from .report import render


class Exit(enum.IntEnum):
    """Exit status (SIGNATURES.md)."""

    OK = 0          # nothing at or above --fail-on
    FINDINGS = 1    # a finding at or above --fail-on
    ERROR = 2       # a usage error, or an input that could not be read at all


FORMATS = ("table", "json", "jsonl", "csv")
ANALYZE_FORMATS = FORMATS + ("html",)


class Failure(click.ClickException):
    """The run could not be done (exit status 2, not 1: 1 means findings)."""

    exit_code = 2


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
    @click.argument("inputs", nargs=-1, required=True, metavar="CAPTURE...")
    @click.option("--stream", type=int, default=None, metavar="N",
                  help="Only Wireshark's tcp.stream N.")
    @click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                  metavar="SECONDS",
                  help="Finish connections idle this long (capture time; default 600).")
    @click.option("-j", "--jobs", type=click.IntRange(1), default=None, metavar="N",
                  help="Analyse N files at once in worker processes (default: the number of CPUs).")
    @click.option("--dask", metavar="ADDRESS", default=None,
                  help="Send the files to this Dask scheduler (e.g. tcp://10.0.0.5:8786); "
                       "its workers must see the same paths.")
    @click.option("-q", "--quiet", is_flag=True, help="No progress bar on a terminal.")
    @click.option("--debug", is_flag=True, help="Show a traceback on internal errors.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.pop("debug")
        quiet = kwargs.pop("quiet")
        inputs = kwargs["inputs"]
        kwargs["scale"] = dict(jobs=kwargs.pop("jobs") or os.cpu_count() or 1, dask=kwargs.pop("dask"),
                               progress=None if quiet else Progress.for_terminal(inputs))
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (| head): not an error
            sys.exit(Exit.OK)
        except KeyboardInterrupt:
            sys.exit(130)
        except ClusterUnavailable as exc:
            raise Failure(str(exc))
        except Exception as exc:
            if debug:
                traceback.print_exc()
            raise Failure(f"internal error: {type(exc).__name__}: {exc} "
                          "(run with --debug for the traceback)")
        finally:
            if kwargs["scale"]["progress"] is not None:
                kwargs["scale"]["progress"].close()
    return wrapper


class Progress:
    """A one-line progress bar on stderr: bytes read of the total, files done."""

    def __init__(self, paths):
        self.files = len(paths)
        self.sizes = {p: os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p)}
        self.total = sum(self.sizes.values())
        self.done_files = 0
        self.done_bytes = 0
        self.shown = 0.0

    @classmethod
    def for_terminal(cls, inputs):
        """A bar when stderr is a terminal, else None (never in pipes or logs)."""
        if not sys.stderr.isatty():
            return None
        return cls(list(expand_inputs(inputs)))

    def reading(self, path, done, total):
        self._show(self.done_bytes + min(done, self.sizes.get(path, done)))

    def file_done(self, path):
        self.done_files += 1
        self.done_bytes += self.sizes.get(path, 0)
        self._show(self.done_bytes, force=True)

    def _show(self, read, force=False):
        now = time.monotonic()
        if not force and now - self.shown < 0.2:
            return
        self.shown = now
        share = read / self.total if self.total else 0.0
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r[{bar:<30}] {read / 1e6:,.0f}/{self.total / 1e6:,.0f} MB, "
                         f"{self.done_files}/{self.files} files")
        sys.stderr.flush()

    def close(self):
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = 0.0


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


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcap-tls-split")
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
@keylog_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE", help="Write the report to FILE instead of standard output.")
@click.option("--by", type=click.Choice(["server", "client"]), default=None,
              help="Instead of the findings: per server (endpoint and SNI) how its responses "
                   "were cut into records, segments and pauses; per client address how many "
                   "connections it closed prematurely, with which codes.")
def analyze(inputs, fmt, stream, idle_timeout, scale, all_connections, fail_on, keylog, output, by):
    """Flag premature-close signatures, one row per finding, then a summary.

    With --keylog, tshark decrypts the records around each finding and the
    finding says what they held (evidence app_data).

    --format html writes one self-contained page: the summary, the findings and
    a picture of every listed connection (the captures are read a second time
    for those).

    Exit status: 0 nothing at or above --fail-on, 1 a finding at or above it,
    2 a usage error or an input that could not be read at all.
    """
    if by is not None:
        return _by(by, inputs, fmt, stream, idle_timeout, scale, fail_on, keylog, output)
    out = _output(output)
    on_connection = None
    if fmt == "jsonl":
        def on_connection(conn):
            render.render_jsonl_connection(conn, out)
            out.flush()
    options = dict(all_connections=all_connections, stream=stream, idle_timeout=idle_timeout,
                   on_connection=on_connection, **scale)
    result = None
    if keylog:
        try:
            result = _wireshark().analyze(list(inputs), keylog=keylog, **options)
        except _wireshark().TsharkMissing as exc:
            _plaintext_not_added(exc)
    if result is None:
        result = run_analysis(list(inputs), **options)
    if fmt == "html":
        _view().html.write(result, out, idle_timeout)
    else:
        render.RENDERERS[fmt](result, out)
    out.flush()
    _errors_to_stderr(result, fmt)
    _exit_for(result.unreadable, result.worst(), fail_on)


def _by(by, inputs, fmt, stream, idle_timeout, scale, fail_on, keylog, output):
    """analyze --by server|client: the tally instead of the findings."""
    if fmt == "html":
        raise click.UsageError("--by writes table, json, jsonl or csv, not html")
    if keylog:
        raise click.UsageError("--by does not read a key log: leave out --keylog")
    out = _output(output)
    fleet = _view().fleet.tally(list(inputs), stream=stream, idle_timeout=idle_timeout, **scale)
    _view().fleet.render(fleet, by, fmt, out)
    out.flush()
    if fmt != "table":
        for inp in fleet.inputs:
            for error in inp.errors:
                click.echo(f"pcap-tls-split: {error}", err=True)
    _exit_for(fleet.unreadable, fleet.worst, fail_on)


def _exit_for(unreadable, worst, fail_on):
    """analyze's exit status: inputs not read, else the worst finding against --fail-on."""
    if unreadable:
        sys.exit(Exit.ERROR)
    if fail_on != "never" and worst is not None and worst >= Severity(fail_on):
        sys.exit(Exit.FINDINGS)
    sys.exit(Exit.OK)


@main.command()
@common_options
@keylog_option
def records(inputs, fmt, stream, idle_timeout, scale, keylog):
    """Every TLS record against the segments (frames) that carried it.

    With --keylog, tshark decrypts them and a plaintext column shows the first
    line of each (or Wireshark's description of a record that is not
    application data; ? when it could not be decrypted).
    """
    out = sys.stdout
    if keylog:
        try:
            texts, inputs_read = _wireshark().records(list(inputs), keylog=keylog, stream=stream,
                                                   idle_timeout=idle_timeout)
        except _wireshark().TsharkMissing as exc:
            _plaintext_not_added(exc)
        else:
            texts.sort(key=lambda t: (t.row.file, t.row.stream, t.row.side != "client", t.row.index))
            _wireshark().render_records(texts, fmt, out)
            for inp in inputs_read:
                for error in inp.errors:
                    click.echo(f"pcap-tls-split: {error}", err=True)
            sys.exit(Exit.ERROR if any(i.format is None for i in inputs_read) else Exit.OK)
    rows = []
    streaming = fmt in ("jsonl",)
    on_record = (lambda row: render.write_jsonl((render.record_dict(row),), out)) \
        if streaming else rows.append
    result = run_analysis(list(inputs), stream=stream, idle_timeout=idle_timeout, on_record=on_record,
                          **scale)
    if not streaming:
        rows.sort(key=lambda r: (r.file, r.stream, r.side != "client", r.index))
        render.render_records(rows, fmt, out)
    _errors_to_stderr(result, None)
    sys.exit(Exit.ERROR if result.unreadable else Exit.OK)


@main.command()
@common_options
def verify(inputs, fmt, stream, idle_timeout, scale):
    """Our TLS records and closes against Wireshark's (tshark), per connection.

    tshark reads each capture again, decoding as TLS the ports where we found
    TLS from the first byte, and the two views are compared per connection and
    side: every record (offset, content type, length), the first FIN and the
    first RST. A table per connection says where they first differ.

    Exit status: 0 all agree, 1 a connection differs, 2 tshark missing, a usage
    error, or an input that could not be read (by us or by tshark).
    """
    out = sys.stdout
    try:
        result = _wireshark().verify(list(inputs), stream=stream, idle_timeout=idle_timeout,
                                  jobs=scale["jobs"])
    except _wireshark().TsharkMissing as exc:
        click.echo(f"pcap-tls-split: verify: {exc}", err=True)
        sys.exit(Exit.ERROR)
    _wireshark().render_verify(result, fmt, out)
    if fmt != "table":
        for inp in result.inputs:
            for error in inp.errors:
                click.echo(f"pcap-tls-split: {error}", err=True)
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
@click.option("--width", type=click.IntRange(60), default=None, metavar="N",
              help="Lines at most N characters wide (default: the terminal's width, else 100).")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour: auto is on a terminal only.")
def show(inputs, stream, idle_timeout, scale, code, min_severity, width, color):
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
    view = _view()
    out = sys.stdout
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns if out.isatty() else 100
    painted = color == "always" or (color == "auto" and out.isatty() and "NO_COLOR" not in os.environ
                                     and os.environ.get("TERM") != "dumb")
    chars = view.UNICODE
    try:
        "".join(chars.values()).encode(out.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        chars = view.ASCII
    try:
        choice = view.choose(list(inputs), stream=stream, code=code, min_severity=min_severity,
                             idle_timeout=idle_timeout, **scale)
    except view.StdinTwice as exc:
        raise Failure(str(exc))
    drawn = view.ladder.ladders(choice, width, painted, chars, idle_timeout)
    if scale["progress"] is not None:
        scale["progress"].close()     # before the pictures: the bar must not cut into them
    for error in choice.errors + drawn.errors:
        click.echo(f"pcap-tls-split: {error}", err=True)
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
def extract(inputs, fmt, stream, idle_timeout, scale, code, min_severity, output, keylog):
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
    view = _view()
    out = sys.stdout
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise Failure(f"cannot write {output}: {folder} is not a folder one can write to")
    try:
        done = view.extract.extract(list(inputs), output, stream=stream, code=code,
                                    min_severity=min_severity, keylog=keylog,
                                    idle_timeout=idle_timeout, **scale)
    except view.StdinTwice as exc:
        raise Failure(str(exc))
    except (view.extract.KeyLogError, OSError) as exc:
        raise Failure(str(exc))
    if scale["progress"] is not None:
        scale["progress"].close()
    for error in done.errors:
        click.echo(f"pcap-tls-split: {error}", err=True)
    if done.connections:
        view.extract.render(done, fmt, out)
    elif not done.unreadable:
        which = (f"tcp.stream {stream}" if stream is not None else f"a {code} finding" if code
                 else f"a finding at or above {min_severity}")
        click.echo(f"pcap-tls-split: no connection with {which}: {output} not written", err=True)
    sys.exit(Exit.ERROR if done.unreadable or (stream is not None and not done.connections) else Exit.OK)


def _output(path):
    """Standard output, or the file -o names (opened now: a bad path is a usage error)."""
    if path is None or path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}")


def _plaintext_not_added(exc):
    click.echo(f"pcap-tls-split: --keylog: {exc}; the plaintext could not be added", err=True)


def _errors_to_stderr(result, fmt):
    if fmt in ("table", "html"):
        return  # the summary already lists them
    for inp in result.inputs:
        for error in inp.errors:
            click.echo(f"pcap-tls-split: {error}", err=True)


if __name__ == "__main__":
    main()
