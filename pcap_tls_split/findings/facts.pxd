# Types for compiling facts.py with Cython (setup.py): declarations only, the
# logic is all in facts.py. A connection's parts are read as the typed objects
# they are (connection.pxd); Facts is a typed class, its attributes declared here.
cimport cython

from pcap_tls_split.tcp.connection cimport Connection, Side

cpdef reach_of(Side closer, Side peer)
cpdef list records_of(Side side, bint complete_only=*)
cpdef last_received(object records, object reach)

cdef class Facts:
    cdef public Connection conn
    cdef public Side client, server, closer, peer, closed_during_handshake
    cdef public object _kept, _inside, version, rtt, app, reach, handshake_frame
    cdef public bint tls13, maybe_tls13, handshake_known

    cpdef str role(self, Side side)
    cpdef Side peer_of(self, Side side)
    @cython.locals(key=tuple)
    cpdef tuple records(self, Side side, bint complete_only=*)
    cpdef position(self)
    cpdef bint is_alert(self, Side side, object record)
    cpdef alert_before(self, Side side, object frame)
    @cython.locals(client=Side, server=Side, side=Side)
    cpdef _handshake_done_frame(self)
