"""The replica layer: what a node does with chosen values, above the protocol core and below the runtime.

Sans-I/O like the core: it takes chosen values and ticks and returns results; the simulator and the worker
runtime both drive it.
"""
