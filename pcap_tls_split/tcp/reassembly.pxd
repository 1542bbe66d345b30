# Types for compiling reassembly.py with Cython (setup.py): declarations only, the
# logic is all in reassembly.py. Every attribute its classes set is declared here;
# one that can hold None or a big number stays an object.
cimport cython

# Constants imported from other modules, as C integers here (arithmetic and
# comparisons with them are C ones; they are then no attributes of this module).
cdef int FIN, RST, SYN

cdef class SideStream:
    cdef public object base, other_bases, held, held_starts, fin, rst, peer_acked
    cdef public bint syn, midstream
    cdef public Py_ssize_t next, held_head, held_bytes, retransmissions, out_of_order
    cdef public Py_ssize_t conflicts, gaps, gap_bytes, keepalives, snap_cut, segments
    cdef public Py_ssize_t before_start, last_end, hole_acked

    @cython.locals(base=object, offset=Py_ssize_t)
    cpdef take(self, object seq, Py_ssize_t size)
    cpdef end_run(self, Py_ssize_t end, Py_ssize_t count)
    @cython.locals(delta=Py_ssize_t, offset=Py_ssize_t)
    cpdef acked(self, long long ack)
