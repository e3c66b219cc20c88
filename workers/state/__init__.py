"""The state of notifications in Redis: the Lua scripts that change it and their loader.

``scripts``: every Lua script (``lua/*.lua``), loaded by one loader that handles
NOSCRIPT in one place. ``notification``: the notification state machine, its
transition table and the pure gate decisions the deliverer acts on.
"""
