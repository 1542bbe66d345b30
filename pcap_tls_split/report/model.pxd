# Types for compiling model.py with Cython (setup.py): declarations only. Its
# classes stay Python classes; the JSON writer's functions call one another as C
# functions (they stay callable from Python too), its field loop on C integers.
cimport cython

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, parts=list)
cpdef str _object_text(object value, tuple names, tuple keys)
cpdef str float_text(object x)
cpdef object _ints_text(object items)
cpdef str _value_text(object x)
cpdef object _dict_text(object value)
cpdef str _list_text(object value)
cpdef str to_json(object value)
