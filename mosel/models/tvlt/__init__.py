"""The paper's TVLT model as the simulator and benchmarks use it: the published facts and a
stand-in latency table (`paper_facts`), and a TVLT-shaped transformer timed on this machine
(`latency`)."""
