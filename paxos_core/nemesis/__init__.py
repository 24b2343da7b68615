"""`paxos-core nemesis`: a real cluster (separate processes, fsync on, one network namespace per node),
client tasks recording every operation, faults on a seeded schedule, and a check of the whole history.

One module per concern: topology.py (namespaces, addresses, partitions), cluster.py (node processes by PID),
faults.py (the fault kinds and the seeded schedule), workload.py (clients that record every operation),
report.py (the checks, the report and its last-line JSON), run.py (one run, start to end).
"""
