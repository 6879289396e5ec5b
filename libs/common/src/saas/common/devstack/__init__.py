"""The local stack: embedded servers from PyPI wheels and the supervisor of service processes.

Used by `saas dev` and by the test session. The wheels are development dependencies; nothing
here is imported by a running service.
"""
