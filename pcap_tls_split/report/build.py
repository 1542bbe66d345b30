"""A finished connection, its facts and findings -> its report; a record -> its row."""

from ..findings import display_filter
from ..tls import ciphers, wire
from .community import community_id
from .model import Alert, CloseSummary, ConnectionReport, Quality, RecordRow, RecordStats

ALERT_LEVELS = {1: "warning", 2: "fatal"}


def connection_report(path, conn, facts, found):
    """The ``ConnectionReport`` of one finished TLS connection: ``facts`` are its
    ``findings.Facts``, ``found`` its findings."""
    client, server = conn.client, conn.server
    closer = facts.closer
    if closer is not None:
        close = closer.close
        aligned, straddled = facts.position()
        close_summary = CloseSummary(conn.role(closer), close.kind, close.time, facts.reach,
                                     close.reach_estimated, close.frame, aligned, straddled)
    else:
        close_summary = CloseSummary()
    mine, theirs = client.stream, server.stream
    hello, answer = client.tracker, server.tracker
    quality = Quality(
        gaps=mine.gaps + theirs.gaps,
        retransmissions=mine.retransmissions + theirs.retransmissions,
        out_of_order=mine.out_of_order + theirs.out_of_order,
        midstream=conn.midstream or mine.midstream or theirs.midstream,
        conflicts=mine.conflicts + theirs.conflicts,
        snap_cut=mine.snap_cut + theirs.snap_cut,
        resyncs=(hello.desyncs if hello is not None else 0) + (answer.desyncs if answer is not None else 0))
    version = facts.version
    if version is None:
        sslv2 = [t.sslv2_hello for t in (hello, answer) if t is not None and t.sslv2_hello]
        if sslv2 and sslv2[0] == 0x0002:
            version = "SSLv2"
    return ConnectionReport(
        file=path, stream=conn.stream, client=client.endpoint, server=server.endpoint,
        role_inferred=conn.role_inferred, start=conn.start, end=conn.last,
        tls_version=version,
        sni=hello.sni if hello is not None else None,
        alpn=answer.alpn if answer is not None else None,
        cipher=ciphers.name(answer.cipher) if answer is not None else None,
        alerts=alerts(conn),
        community_id=community_id(client.addr, client.port, server.addr, server.port),
        records={"client": RecordStats(client.total, client.straddling, client.header_split,
                                       client.coalesced),
                 "server": RecordStats(server.total, server.straddling, server.header_split,
                                       server.coalesced)},
        close=close_summary, quality=quality,
        # (the rules give each finding its filter; one made without gets it here)
        findings=tuple([f if f.wireshark_filter is not None
                        else f.with_filter(display_filter(conn.stream, f.frame, f.evidence))
                        for f in found]))


def alerts(conn):
    """The alerts both sides sent in the clear, as ``Alert``s in frame order."""
    sent = [Alert(conn.role(side), ALERT_LEVELS.get(level, str(level)),
                  wire.ALERT_DESCRIPTIONS.get(description, str(description)), frame)
            for side in (conn.client, conn.server) for level, description, frame in side.alerts]
    return tuple(sorted(sent, key=lambda a: a.frame))


def record_row(path, conn, side, record):
    """The ``RecordRow`` of one record ``side`` of ``conn`` sent."""
    return RecordRow(
        file=path, stream=conn.stream, side=conn.role(side), src=side.endpoint,
        index=record.index, offset=record.offset, type=record.type,
        version=wire.version_name(record.version) or "", length=record.length,
        segments=len(record.frames), header_split=record.header_split,
        first_frame=record.first_frame, last_frame=record.last_frame,
        time=record.last_time if record.last_time is not None else 0.0,
        straddling=record.straddling, coalesced=record.coalesced, frames=record.frames,
        complete=record.complete, missing=record.missing, header_length=record.header_length)
