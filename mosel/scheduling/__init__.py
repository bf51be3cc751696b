"""Online scheduling core (docs/architecture.md, "The scheduler"), free of the engine and the
wire so that the live dispatcher and the simulator run the same code:

- `job`: jobs and items as the scheduler sees them, and the model view it reads;
- `policy`: the policy interface; `agnostic`, `aggressive`, `mosel_policy`: one policy
  each (`profiled` is the base of the two that plan from profiles); `registry`: by name;
- `rounds`: round formation, lanes and round latency; `fit`: the online cost correction;
- `predict`: finish-time prediction over the dispatcher's rounds and lanes;
- `reassign`: the accuracy-maximising choice of strategies under deadlines;
- `headroom`: planning headroom learned from the deadlines actually missed.
"""
