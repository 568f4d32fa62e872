"""Pure flow layer: pipeline map, the Flow value, compilers and the offline simulator.

Nothing in this package opens sockets or touches the os-ken runtime; everything here is a
function of a topology snapshot, so it can be unit-tested and simulated without a switch.
"""
