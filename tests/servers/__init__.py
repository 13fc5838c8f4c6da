"""Wire-level test servers for the clouds' APIs: EKS (in front of moto), GKE and ARM (AKS).

Each speaks its cloud's real wire format (paths, JSON bodies, long-running operations, error
bodies) so netiso's real SDK clients talk to it through their standard endpoint settings; each
keeps a call log tests assert on, and can play the cloud's side effects on the lab's cluster
(``tests/lab/engines.py``). Each runs in-process for tests and as ``python -m tests.servers.<name>``
for the README's demo.
"""
