"""TLS wire constants and the few content parsers the tracker needs.

Parsing goes in stages (RFC 8446 section 5.1, RFC 5246 section 6.2): the
5-byte record header (``parse_header``), then the envelope with its segment
span (``records.RecordTracker``), then the few contents we need: handshake
message types, the negotiated version from ServerHello, alerts.

Every parser here has three outcomes, written in its docstring: complete
(result), incomplete (``None``), malformed (``MalformedTLS``).
"""

import re
import struct
from typing import NamedTuple

_tuple_new = tuple.__new__    # a NamedTuple from its fields, in a tuple (its __new__ is Python code)

# Content types, RFC 8446 section 5.1 / RFC 6520 (heartbeat).
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake",
                 23: "application_data", 24: "heartbeat", "sslv2": "sslv2"}

# Largest record body a peer may send: 2^14 + 2048 (RFC 5246 section 6.2.3).
MAX_RECORD_LENGTH = 2 ** 14 + 2048
HEADER_LENGTH = 5

# Handshake message types, RFC 8446 section 4 and RFC 5246 section 7.4.
CLIENT_HELLO = 1
SERVER_HELLO = 2
NEW_SESSION_TICKET = 4
FINISHED = 20
HANDSHAKE_TYPES = {0: "hello_request", 1: "client_hello", 2: "server_hello",
                   3: "hello_verify_request", 4: "new_session_ticket",
                   5: "end_of_early_data", 8: "encrypted_extensions",
                   11: "certificate", 12: "server_key_exchange",
                   13: "certificate_request", 14: "server_hello_done",
                   15: "certificate_verify", 16: "client_key_exchange",
                   20: "finished", 21: "certificate_url",
                   22: "certificate_status", 24: "key_update",
                   254: "message_hash"}

# Extensions: server_name (RFC 6066 section 3), application_layer_protocol_negotiation
# (RFC 7301), supported_versions: the real version in TLS 1.3 (RFC 8446 section 4.2.1).
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
SNI_HOST_NAME = 0
# HandshakeReader: the body of a ClientHello, complete (not a message type on the wire)
CLIENT_HELLO_BODY = -1

# ServerHello.random of a HelloRetryRequest, RFC 8446 section 4.1.3.
HRR_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

# An encrypted TLS 1.3 alert: 2 bytes of alert, 1 byte of inner content type
# and the 16-byte AEAD tag of every TLS 1.3 cipher suite but CCM_8 (8 bytes).
TLS13_ALERT_LENGTHS = (19, 11)
# An encrypted TLS 1.3 Finished: 4-byte header, 32- or 48-byte verify_data
# (SHA-256 or SHA-384 suites), 1 byte of inner type, 16-byte tag.
TLS13_FINISHED_LENGTHS = (53, 69)

ALERT_DESCRIPTIONS = {0: "close_notify", 10: "unexpected_message",
                      20: "bad_record_mac", 22: "record_overflow",
                      40: "handshake_failure", 42: "bad_certificate",
                      43: "unsupported_certificate", 44: "certificate_revoked",
                      45: "certificate_expired", 46: "certificate_unknown",
                      47: "illegal_parameter", 48: "unknown_ca",
                      49: "access_denied", 50: "decode_error",
                      51: "decrypt_error", 70: "protocol_version",
                      71: "insufficient_security", 80: "internal_error",
                      86: "inappropriate_fallback", 90: "user_canceled",
                      100: "no_renegotiation", 109: "missing_extension",
                      110: "unsupported_extension", 112: "unrecognized_name",
                      116: "certificate_required",
                      120: "no_application_protocol"}

# A plausible record header: content type 20-24, version major 3, minor 0-4.
HEADER_START = re.compile(rb"[\x14-\x18]\x03[\x00-\x04]")
# The start of a TLS handshake (ClientHello or ServerHello in a handshake
# record) or of a lone alert: where TLS begins after a plaintext prologue.
TLS_START = re.compile(rb"\x16\x03[\x00-\x04]..[\x01\x02]\x00|\x15\x03[\x00-\x04]\x00\x02",
                       re.DOTALL)
# The second byte of each of its alternatives (the version major), before which
# each has its first (a handshake's or an alert's content type).
_TLS_START_SECOND = b"\x03"


def tls_start(data):
    """Where ``TLS_START`` first matches in ``data`` (-1: nowhere): its search, with
    the positions to try found first by ``bytes.find`` of the byte every match has
    second (0x03, found by memchr: rare in text, 1 in 256 in random bytes), those
    with a handshake or alert type before it tried in order (the regex engine
    scans a plaintext prologue byte by byte, and ``find`` of the two leading bytes
    is a few times slower than of one)."""
    if type(data) is not bytes and not isinstance(data, bytearray):
        data = bytes(data)           # (a view has no find)
    at = data.find(_TLS_START_SECOND, 1)
    while at != -1:
        lead = data[at - 1]
        if (lead == 0x16 or lead == 0x15) and TLS_START.match(data, at - 1) is not None:  # HANDSHAKE, ALERT
            return at - 1
        at = data.find(_TLS_START_SECOND, at + 1)
    return -1


class MalformedTLS(ValueError):
    """Bytes that cannot be the TLS structure they were parsed as."""


def parse_header(header):
    """Parse a 5-byte record header.

    Complete: ``(content_type, version, length)``; incomplete: ``None`` when
    fewer than 5 bytes are given; malformed: ``MalformedTLS`` when the type,
    the version major or the length is out of range.
    """
    if len(header) < HEADER_LENGTH:
        return None
    content_type, major, minor = header[0], header[1], header[2]
    length = (header[3] << 8) | header[4]
    if not (CHANGE_CIPHER_SPEC <= content_type <= HEARTBEAT):
        raise MalformedTLS(f"content type {content_type}")
    if major != 3 or minor > 4:
        raise MalformedTLS(f"version {major}.{minor}")
    if length > MAX_RECORD_LENGTH:
        raise MalformedTLS(f"length {length}")
    return content_type, (major << 8) | minor, length


# An SSLv2-format record (RFC 6101 appendix E, the SSL 2.0 draft): no content
# type; Record.type is this word for them. Its header is 2 bytes (high bit set:
# a 15-bit length) or 3 (a 14-bit length and a padding count).
SSLV2 = "sslv2"
SSLV2_VERSION = 0x0002
SSLV2_CLIENT_HELLO, SSLV2_SERVER_HELLO = 1, 4


def sslv2_header_length(first_byte):
    """The length of an SSLv2 record header that starts with ``first_byte``."""
    return 2 if first_byte & 0x80 else 3


def parse_sslv2_header(header):
    """Parse a 2- or 3-byte SSLv2 record header (``sslv2_header_length`` bytes).

    Complete: ``(SSLV2, 0x0002, length)``; malformed: ``MalformedTLS`` for a
    zero length."""
    if header[0] & 0x80:
        length = ((header[0] & 0x7F) << 8) | header[1]
    else:
        length = ((header[0] & 0x3F) << 8) | header[1]
    if not length:
        raise MalformedTLS("SSLv2 record length 0")
    return SSLV2, SSLV2_VERSION, length


def sslv2_server_hello(head):
    """Whether ``head`` starts with an SSL 2.0 SERVER-HELLO (2-byte header, message
    type 4, server version 0x0002). Complete: True or False; incomplete: None."""
    if len(head) < 7:
        return None
    return bool(head[0] & 0x80) and head[2] == SSLV2_SERVER_HELLO \
        and ((head[5] << 8) | head[6]) == SSLV2_VERSION


def sslv2_client_hello_length(head):
    """Length of an SSLv2-format ClientHello at the start of ``head``.

    SSL 2.0 record header with the high bit set (2-byte header), message type
    1 (CLIENT-HELLO) and a version 2.0 or 3.x (RFC 6101 appendix E.1).
    Complete: ``(total_length, version)``; incomplete: ``None``; malformed:
    ``MalformedTLS``.
    """
    if len(head) < 5:
        return None
    if not head[0] & 0x80 or head[2] != 1:
        raise MalformedTLS("not an SSLv2 ClientHello")
    version = (head[3] << 8) | head[4]
    if version != 0x0002 and not (0x0300 <= version <= 0x0304):
        raise MalformedTLS(f"SSLv2 ClientHello version {version:#06x}")
    length = ((head[0] & 0x7F) << 8) | head[1]
    if length < 9:
        raise MalformedTLS("SSLv2 ClientHello too short")
    return 2 + length, version


def version_name(version):
    """A person's name for a wire version: ``1.2``, ``1.3``, ``SSLv3``..."""
    if version is None:
        return None
    if version == 0x0002:
        return "SSLv2"
    if version == 0x0300:
        return "SSLv3"
    if 0x0301 <= version <= 0x0304:
        return f"1.{version - 0x0301}"
    if (version >> 8) == 0x7F or version in (0xFB1A, 0x7E02):
        return "1.3"  # TLS 1.3 drafts (0x7fXX) and experimental code points
    return f"{version:#06x}"


class ServerHello(NamedTuple):
    """What a ServerHello says (RFC 8446 section 4.1.3, RFC 5246 section 7.4.1.3)."""

    version: int
    """The version it negotiates (supported_versions when there, else legacy_version)."""
    retry: bool
    """It is a HelloRetryRequest."""
    cipher: int
    """The cipher suite it selected (None: its body was cut before it)."""
    alpn: str
    """The ALPN protocol it selected (None: none; TLS 1.3 sends it encrypted)."""


class ClientHello(NamedTuple):
    """What a ClientHello says in clear (RFC 8446 section 4.1.2)."""

    random: bytes
    """Its 32-byte random (the key of SSLKEYLOGFILE lines)."""
    sni: str
    """The host name of its server_name extension (None: none)."""
    alpn: tuple
    """The ALPN protocols it offers, in its order."""


def _extension_spans(body, pos):
    """``(type, start, end)`` of each extension from ``pos`` of a hello body (``bytes``),
    to its end: its data is ``body[start:end]`` (cut short where the body is)."""
    spans = []
    n = len(body)
    if pos + 2 > n:
        return spans
    end = min(n, pos + 2 + ((body[pos] << 8) | body[pos + 1]))
    pos += 2
    while pos + 4 <= end:
        length = (body[pos + 2] << 8) | body[pos + 3]
        spans.append(((body[pos] << 8) | body[pos + 1], pos + 4, pos + 4 + length))
        pos += 4 + length
    return spans


def _alpn_names(data):
    """The protocol names of an ALPN extension's ProtocolNameList."""
    names = []
    pos, end = 2, min(len(data), 2 + int.from_bytes(data[:2], "big"))
    while pos < end:
        size = data[pos]
        names.append(bytes(data[pos + 1:pos + 1 + size]).decode("ascii", "replace"))
        pos += 1 + size
    return tuple(names)


def server_hello(body):
    """What a ServerHello says (``ServerHello``).

    ``body`` is the ServerHello message body (after the 4-byte handshake
    header). Complete: a ``ServerHello``; malformed: ``MalformedTLS`` when not
    even its version can be read (a cut body is malformed: the caller gives it
    whole; what is cut past the version is None).
    """
    try:
        legacy_version, = struct.unpack_from("!H", body, 0)
        is_retry = bytes(body[2:34]) == HRR_RANDOM
        if legacy_version >> 8 == 0x7F:
            # a TLS 1.3 draft's ServerHello (up to draft 22): no session id, no compression
            cipher_at = 34
            pos = cipher_at + 2
        else:
            session_id_length = body[34]
            cipher_at = 34 + 1 + session_id_length
            pos = cipher_at + 2 + 1  # session id, cipher, compression
        version = legacy_version
        alpn = None
        for ext_type, start, end in _extension_spans(bytes(body), pos):
            if ext_type == EXT_SUPPORTED_VERSIONS and min(end, len(body)) - start == 2:
                version = (body[start] << 8) | body[start + 1]
                break
        cipher = struct.unpack_from("!H", body, cipher_at)[0] if cipher_at + 2 <= len(body) else None
    except (IndexError, struct.error) as exc:
        raise MalformedTLS(f"ServerHello: {exc}") from None
    try:
        for ext_type, start, end in _extension_spans(bytes(body), pos):
            if ext_type == EXT_ALPN:
                names = _alpn_names(body[start:end])
                alpn = names[0] if names else None
    except (IndexError, struct.error):
        pass
    return _tuple_new(ServerHello, (version, is_retry, cipher, alpn))


def server_hello_version(body):
    """``(version, is_hello_retry)`` of a ServerHello body (see ``server_hello``)."""
    hello = server_hello(body)
    return hello.version, hello.retry


def client_hello(body):
    """What a ClientHello says in clear (``ClientHello``); ``body`` is the message
    body, whole. Malformed (cut before its random): ``MalformedTLS``."""
    if len(body) < 34:
        raise MalformedTLS("ClientHello shorter than its random")
    random = bytes(body[2:34])
    sni = None
    alpn = ()
    try:
        pos = 34
        pos += 1 + body[pos]                                          # session id
        pos += 2 + int.from_bytes(body[pos:pos + 2], "big")           # cipher suites
        pos += 1 + body[pos]                                          # compression methods
        for ext_type, start, stop in _extension_spans(bytes(body), pos):
            if ext_type == EXT_SERVER_NAME and sni is None:
                data = body[start:stop]
                at, end = 2, min(len(data), 2 + int.from_bytes(data[:2], "big"))
                while at + 3 <= end:
                    kind, size = data[at], int.from_bytes(data[at + 1:at + 3], "big")
                    if kind == SNI_HOST_NAME:
                        sni = bytes(data[at + 3:at + 3 + size]).decode("ascii", "replace")
                        break
                    at += 3 + size
            elif ext_type == EXT_ALPN:
                alpn = _alpn_names(body[start:stop])
    except (IndexError, struct.error):
        pass  # what was read before the damage stands
    return _tuple_new(ClientHello, (random, sni, alpn))


class HandshakeReader:
    """Cuts a side's clear handshake byte stream into messages.

    Feed the bodies of clear handshake records with ``feed``; it returns the
    ``(type, body_or_None)`` of every message that starts in these bytes, and
    the bodies of the two hellos, whose content we need, once complete: a
    ServerHello is returned only then, ``(SERVER_HELLO, body)``; a ClientHello
    when it starts, ``(CLIENT_HELLO, None)``, and again complete as
    ``(CLIENT_HELLO_BODY, body)``. Messages may span records and records may
    hold several.
    """

    MAX_KEPT_BODY = 1 << 16
    __slots__ = ("_header", "_remaining", "_kept", "_kept_as")

    def __init__(self):
        self._header = bytearray()
        self._remaining = 0   # body bytes of the current message still to come
        self._kept = None     # hello body being collected
        self._kept_as = None  # what it is returned as when complete

    def between_messages(self):
        """Whether it holds nothing: no message begun and not ended (a new reader is the same)."""
        return not self._remaining and not self._header

    def feed(self, data):
        started = []
        pos, n = 0, len(data)
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                if self._kept is not None:
                    self._kept += data[pos:pos + take]
                self._remaining -= take
                pos += take
                if not self._remaining and self._kept is not None:
                    started.append((self._kept_as, bytes(self._kept)))
                    self._kept = None
                continue
            take = min(4 - len(self._header), n - pos)
            self._header += data[pos:pos + take]
            pos += take
            if len(self._header) < 4:
                break
            msg_type = self._header[0]
            length = int.from_bytes(self._header[1:4], "big")
            self._header.clear()
            self._remaining = length
            if msg_type == SERVER_HELLO and length <= self.MAX_KEPT_BODY:
                self._kept, self._kept_as = bytearray(), SERVER_HELLO
                if not length:
                    started.append((msg_type, b""))
                    self._kept = None
            else:
                started.append((msg_type, None))
                if msg_type == CLIENT_HELLO and 0 < length <= self.MAX_KEPT_BODY:
                    self._kept, self._kept_as = bytearray(), CLIENT_HELLO_BODY
        return started
