"""`incentives chaos`: the seeded fault suite with an exact oracle (issue 15).

`poison.py` builds the bad input, `oracle.py` checks a finished run against the replay of the
recorded log, `faults.py` injects the faults into a running local stack, `run.py` drives it all.
"""
