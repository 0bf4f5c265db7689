"""The long-running roles: scheduler (fires due slots), worker (runs them) and the
process runner that wires settings -> Engine -> role and handles signals. Roles talk to
Redis only through the Engine and never import each other.
"""
