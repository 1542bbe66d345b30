# Types for compiling pcapng.py with Cython (setup.py): declarations only, the
# logic is all in pcapng.py. The block walk's offsets, lengths and interface
# numbers are C integers (its timestamps stay Python numbers: the same floats).
cimport cython

from pcap_tls_split.capture cimport pcap

cdef bint COMPILED

@cython.locals(end=Py_ssize_t, nif=Py_ssize_t, nxt=Py_ssize_t, btype=Py_ssize_t, blen=Py_ssize_t,
               ifid=Py_ssize_t, incl=Py_ssize_t, header=Py_ssize_t, shb=Py_ssize_t, epb_type=Py_ssize_t,
               pb_type=Py_ssize_t, max_block=Py_ssize_t, epb_data_at=Py_ssize_t, little=bint,
               hi=cython.ulonglong, lo=cython.ulonglong, compiled=bint)
cpdef tuple blocks(object capture, object buf, Py_ssize_t pos, Py_ssize_t n, list ifaces,
                   object endian, object tl, object u32, object epb, object pb, list packets)
