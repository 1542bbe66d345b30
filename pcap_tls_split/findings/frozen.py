"""Frozen dataclasses that are made and pickled fast: what findings and reports are made of.

``dataclass(frozen=True, slots=True)`` pickles each object through
``dataclasses.fields``, both ways (a few microseconds an object, and a
connection's report is a dozen of them: the bulk of what a worker's results
cost its parent), and its ``__init__`` sets each field through
``object.__setattr__`` (a third of a microsecond a field; the ``records``
command makes a row of 20 for every record). ``frozen`` makes the same class,
with an ``__init__`` of the same signature that sets each slot through its
descriptor, and has it pickle as a call of the class with its field values in
order.
"""

import inspect
from dataclasses import MISSING, dataclass, fields
from operator import attrgetter


def frozen(cls):
    """``dataclass(frozen=True, slots=True)``, made by its slots' descriptors and
    pickled (and copied) by its fields' values."""
    own_init = "__init__" in cls.__dict__
    cls = dataclass(frozen=True, slots=True)(cls)
    made = fields(cls)
    if not all(f.init for f in made):
        raise TypeError(f"{cls.__name__}: every field must be an __init__ argument")
    # dataclass's own __init__ where ours would not be the same: one written in the
    # class, a __post_init__, InitVar or keyword-only fields, a name of ours
    if not own_init and len(made) == len(cls.__dataclass_fields__) \
            and not any(f.kw_only or f.name.startswith("_frozen_") for f in made) \
            and not hasattr(cls, "__post_init__"):
        cls.__init__ = _init(cls, made)
    values = attrgetter(*(f.name for f in made))
    if len(made) == 1:
        def __reduce__(self):
            return cls, (values(self),)
    else:
        def __reduce__(self):
            return cls, values(self)
    cls.__reduce__ = __reduce__
    return cls


_FACTORY = object()     # an argument not given whose default is a factory's


def _init(cls, made):
    """The ``__init__`` dataclass writes for ``cls`` (its parameters, defaults and
    default factories), each field set by its slot's ``__set__``."""
    space = {"_frozen_FACTORY": _FACTORY}
    params, body = [], []
    for k, f in enumerate(made):
        name = f.name
        # the slot's descriptor, on the class that declares it (a base's, inherited)
        slot = next(c.__dict__[name] for c in cls.__mro__ if name in c.__dict__)
        space[f"_frozen_set{k}"] = slot.__set__
        if f.default is not MISSING:
            space[f"_frozen_default{k}"] = f.default
            params.append(f"{name}=_frozen_default{k}")
        elif f.default_factory is not MISSING:
            space[f"_frozen_factory{k}"] = f.default_factory
            params.append(f"{name}=_frozen_FACTORY")
            body.append(f"    if {name} is _frozen_FACTORY:\n        {name} = _frozen_factory{k}()")
        else:
            params.append(name)
        body.append(f"    _frozen_set{k}(_frozen_self, {name})")
    code = f"def __init__({', '.join(['_frozen_self'] + params)}):\n" + "\n".join(body or ["    pass"]) + "\n"
    exec(code, space)
    init = space["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__signature__ = inspect.signature(cls.__init__)   # dataclass's: annotations, <factory>
    return init
