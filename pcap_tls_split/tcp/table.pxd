# Types for compiling table.py with Cython (setup.py): declarations only, the
# logic is all in table.py. Every attribute ConnectionTable sets is declared here
# (a subclass in Python, as view/detail.py's, may add its own).
cimport cython

# Constants imported from other modules, as C integers here (arithmetic and
# comparisons with them are C ones; they are then no attributes of this module).
cdef int ACK, ICMP_QUOTE, SYN

from pcap_tls_split.tcp.connection cimport Connection, Side


cpdef bytes wire_key(object src, object sport, object dst, object dport)
@cython.locals(a=Side, b=Side)
cpdef tuple _wire_keys(Connection conn)

cdef class ConnectionTable:
    cdef public object on_connection, on_record, idle_timeout, linger, by_wire, _socks_wire
    cdef public object tombstones, share, evictions, _opened, _half_open, _ahead
    cdef public object max_half_open, max_connections, max_tombstones
    cdef public Py_ssize_t streams, spent, late_packets, _countdown
    cdef public double now, _swept, _jump

    cpdef tick(self, double time)
    cpdef entry(self, object wire)
    cdef _find(self, object wire)
    @cython.locals(conn=Connection, now=double, linger=double, idle_timeout=double)
    cdef list _due(self)
    @cython.locals(conn=Connection, side=Side, flags=int)
    cpdef place(self, object frame, object time, object segment, object wire=*)
