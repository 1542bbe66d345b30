# Types for compiling frame.py with Cython (setup.py): declarations only, the
# logic is all in frame.py. The header walk's offsets and the header fields it
# branches on are C integers; what goes into a Segment stays a Python object.
cimport cython


@cython.locals(n=Py_ssize_t, q=Py_ssize_t, ps=Py_ssize_t, offx=Py_ssize_t)
cpdef _tcp(object data, Py_ssize_t p, Py_ssize_t end, object src, object dst)

@cython.locals(vhl=Py_ssize_t, tot=Py_ssize_t, frag=Py_ssize_t, proto=Py_ssize_t, ihl=Py_ssize_t,
               end=Py_ssize_t, p=Py_ssize_t)
cpdef _ip4(object data, Py_ssize_t off, Py_ssize_t limit, Py_ssize_t depth)

cpdef _ip_proto(Py_ssize_t proto, object data, Py_ssize_t p, Py_ssize_t end, object src, object dst,
                Py_ssize_t depth)

@cython.locals(sport=Py_ssize_t, dport=Py_ssize_t, ulen=Py_ssize_t, q=Py_ssize_t)
cpdef _udp(object data, Py_ssize_t p, Py_ssize_t end, Py_ssize_t depth)

cpdef _ethertype(Py_ssize_t et, object data, Py_ssize_t p, Py_ssize_t end, Py_ssize_t depth)

cpdef _eth(object data, Py_ssize_t p, Py_ssize_t end, Py_ssize_t depth)

@cython.locals(tot=Py_ssize_t, frag=Py_ssize_t, proto=Py_ssize_t, offx=Py_ssize_t, end=Py_ssize_t,
               ps=Py_ssize_t, n=Py_ssize_t, et=Py_ssize_t)
cpdef decode(object linktype, object data, object orig_len)
