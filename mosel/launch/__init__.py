"""Running services as local processes: the whole stack (`stack`, used by `mosel up`, the demo,
benchmarks and tests) and a profile store for one command (`store_session`)."""
