# Types for compiling loop.py with Cython (setup.py): declarations only, the
# logic is all in loop.py. The fused loop's locals that are header fields and
# offsets are C integers; the connection it hands a segment to is typed, so that
# segment_in_order is a direct call.
cimport cython

from pcap_tls_split.capture cimport pcap
from pcap_tls_split.tcp.connection cimport Connection, Side
from pcap_tls_split.tcp.table cimport ConnectionTable

cdef bint COMPILED
# The sequence number space's mask (tcp.reassembly's), a C integer here.
cdef long long MASK

@cython.locals(p=Py_ssize_t, incl=Py_ssize_t, q=Py_ssize_t, link=object, ps=Py_ssize_t, size=Py_ssize_t,
               tot=Py_ssize_t, frag=int, proto=int, vhl=int, et=int, offx=int, flags=int,
               h_left=Py_ssize_t, h_next=Py_ssize_t, h_countdown=Py_ssize_t, h_swept=double,
               ip4_least=Py_ssize_t, ip6_least=Py_ssize_t, ethertype_first=bint, tcp=Py_ssize_t,
               connection=Connection, side=Side, frames=list, ends=list, times=list,
               plen=Py_ssize_t, nh=int, half=Py_ssize_t, report_at=Py_ssize_t,
               nothing=bint, buf=bytes, seq=cython.longlong, ack=cython.longlong,
               h_seq=cython.longlong, h_ack=cython.longlong, compiled=bint)
cpdef fused_loop(capture, ConnectionTable table, errors, name, progress=*)
