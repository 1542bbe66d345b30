"""What is application data: SIGNATURES.md "Application data", for one connection.

Up to TLS 1.2 every type-23 record is application data. In TLS 1.3 the
encrypted handshake is type 23 too: a side's first encrypted flight is
handshake (the client's up to its Finished, certificate messages before it
included), and what the server sends before the client's first request is
post-handshake (session tickets). These rules read a side's first and last
type-23 records (``head``, ``tail``: kept by the connection as records are
found, at most ``HEAD`` and ``TAIL``) once the connection is over.
"""

from .wire import APPLICATION_DATA, TLS13_ALERT_LENGTHS, TLS13_FINISHED_LENGTHS, version_name

HEAD = 8        # first type-23 records kept per side (TLS 1.3 handshake, first request)
TAIL = 4        # last type-23 records kept per side


class ApplicationData:
    """The application-data rules of one finished connection.

    ``version``: the negotiated version (wire value, None if unseen);
    ``client_head``: the client's first type-23 records."""

    __slots__ = ("tls13", "client_finished", "first_request")

    def __init__(self, version, client_head):
        self.tls13 = version_name(version) == "1.3"
        # TLS 1.3: the client's Finished, the last record of its encrypted handshake
        # flight; else its first type-23 record (None: none)
        self.client_finished = _client_finished(client_head)
        # TLS 1.3: the client's first application data record (None: none)
        self.first_request = _first_request(client_head, self.client_finished)

    def is_application_data(self, from_client, record):
        """Whether a record the client (``from_client``) or the server sent is application data."""
        if record.type != APPLICATION_DATA:
            return False
        if not self.tls13:
            return True
        if from_client:
            finished = self.client_finished
            return finished is not None and record.index > finished.index
        request = self.first_request
        return request is not None and record.first_frame > request.first_frame

    def is_post_handshake(self, from_client, record):
        """TLS 1.3: a server record after the client's Finished that is not application
        data (session tickets, key updates)."""
        if from_client or record.type != APPLICATION_DATA or not self.tls13:
            return False
        finished = self.client_finished
        return (finished is not None and record.first_frame > finished.last_frame
                and not self.is_application_data(False, record))

    def last(self, from_client, tail):
        """The side's last application data record among its last type-23 records
        ``tail`` (None if it sent none)."""
        for record in reversed(tail):
            if self.tls13 and record.length in TLS13_ALERT_LENGTHS:
                continue  # an encrypted alert
            if self.is_application_data(from_client, record):
                return record
        return None


def _client_finished(head):
    for record in head[:HEAD // 2]:
        if record.length in TLS13_FINISHED_LENGTHS:
            return record
    return head[0] if head else None


def _first_request(head, finished):
    if finished is not None:
        for record in head:
            if record.index > finished.index and record.length not in TLS13_ALERT_LENGTHS:
                return record
    return None
