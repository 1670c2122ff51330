"""refimpl: the reference implementation of *Compressing Deep Networks*.

A small, dependency-light NumPy package: network layers with hand-written backward passes
(:mod:`refimpl.nn`), data loaders (:mod:`refimpl.data`), a cost model (:mod:`refimpl.cost`),
reference models (:mod:`refimpl.models`) and, on top of them, the compression methods the book
explains.
"""

__version__ = "0.1.0"
