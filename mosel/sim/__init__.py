"""Traffic and simulation: workloads (`workload`), the discrete-event simulator that runs the
real policies on a virtual clock (`simulator`) and the live load generator (`loadgen`)."""
