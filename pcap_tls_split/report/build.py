"""A finished connection, its facts and findings -> its report; a record -> its row."""

import dataclasses

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
    sides = (client, server)
    quality = Quality(
        gaps=sum(s.stream.gaps for s in sides),
        retransmissions=sum(s.stream.retransmissions for s in sides),
        out_of_order=sum(s.stream.out_of_order for s in sides),
        midstream=conn.midstream or any(s.stream.midstream for s in sides),
        conflicts=sum(s.stream.conflicts for s in sides),
        snap_cut=sum(s.stream.snap_cut for s in sides),
        resyncs=sum(s.tracker.desyncs for s in sides if s.tracker is not None))
    version = facts.version
    if version is None:
        sslv2 = [s.tracker.sslv2_hello for s in sides if s.tracker is not None and s.tracker.sslv2_hello]
        if sslv2 and sslv2[0] == 0x0002:
            version = "SSLv2"
    hello, answer = client.tracker, server.tracker
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
        findings=tuple(dataclasses.replace(f, wireshark_filter=wireshark_filter(conn.stream, f))
                       for f in found))


def alerts(conn):
    """The alerts both sides sent in the clear, as ``Alert``s in frame order."""
    sent = [Alert(conn.role(side), ALERT_LEVELS.get(level, str(level)),
                  wire.ALERT_DESCRIPTIONS.get(description, str(description)), frame)
            for side in (conn.client, conn.server) for level, description, frame in side.alerts]
    return tuple(sorted(sent, key=lambda a: a.frame))


def evidence_frames(evidence):
    """Every frame number a finding's evidence names (keys ``frame`` and ``*_frame``,
    nested dicts included)."""
    for key, value in evidence.items():
        if isinstance(value, dict):
            yield from evidence_frames(value)
        elif (key == "frame" or key.endswith("_frame")) and isinstance(value, int) \
                and not isinstance(value, bool) and value > 0:
            yield value


def wireshark_filter(stream, finding):
    """The display filter that shows a finding's packets in Wireshark: its stream from the
    earliest frame the finding names (its own, or one of its evidence) on."""
    first = min([finding.frame, *evidence_frames(finding.evidence)])
    return f"tcp.stream eq {stream} && frame.number >= {first}"


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
