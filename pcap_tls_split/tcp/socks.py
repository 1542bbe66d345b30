"""SOCKS as Wireshark's SOCKS dissector sees it, for its stream numbers.

Wireshark's SOCKS dissector (TCP port 1080) hands the proxied bytes to the
dissector of the proxied connection through a conversation of their own,
which takes a ``tcp.stream`` number: at the first payload after the proxy
granted a CONNECT (SOCKS 4: reply 90; SOCKS 5: reply 0, after the method
negotiation and, for method 2, the username/password exchange). ``SocksWatch``
follows that handshake on one connection's payloads (segment by segment, as
they are captured: the handshake messages are a few bytes each) and says when
the number is spent; it is ``done`` then, or as soon as the bytes are not that
handshake.
"""

SOCKS_PORT = 1080

CONNECT = 1
SOCKS4_GRANTED = 90
SOCKS5_SUCCEEDED = 0
USERNAME_PASSWORD = 2


class SocksWatch:
    """The SOCKS handshake of one connection, as far as stream numbers care."""

    __slots__ = ("client_is_a", "state", "done")

    def __init__(self, client_is_a):
        self.client_is_a = client_is_a      # the connection's side "a" connected to port 1080
        self.state = "request"              # what is expected next
        self.done = False

    def payload(self, from_a, data):
        """A payload of the connection (``from_a``: its side a sent it). True when it
        spends a stream number."""
        from_client = from_a == self.client_is_a
        state = self.state
        if state == "granted":
            self.done = True
            return True
        if state == "request" and from_client:
            if data[0] == 4 and len(data) >= 9 and data[1] == CONNECT:
                self.state = "reply4"
                return False
            if data[0] == 5 and len(data) >= 3 and len(data) == 2 + data[1]:
                self.state = "method"
                return False
        elif state == "reply4" and not from_client:
            if len(data) >= 8 and data[0] == 0 and data[1] == SOCKS4_GRANTED:
                self.state = "granted"
                return False
        elif state == "method" and not from_client:
            if len(data) == 2 and data[0] == 5:
                self.state = "auth" if data[1] == USERNAME_PASSWORD else "connect"
                return False
        elif state == "auth" and from_client:
            if data[0] == 1:
                self.state = "auth_reply"
                return False
        elif state == "auth_reply" and not from_client:
            if len(data) == 2 and data[0] == 1 and data[1] == 0:
                self.state = "connect"
                return False
        elif state == "connect" and from_client:
            if len(data) >= 7 and data[0] == 5 and data[1] == CONNECT:
                self.state = "reply5"
                return False
        elif state == "reply5" and not from_client:
            if len(data) >= 7 and data[0] == 5 and data[1] == SOCKS5_SUCCEEDED:
                self.state = "granted"
                return False
        self.done = True                    # not (or no longer) that handshake
        return False
