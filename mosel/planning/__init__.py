"""Offline planning: cost models (`costs`: late fusion per encoder, joint per configuration, built
from inputs `cost_inputs` checks) and the integer-exact strategy-matrix solver (`solver`, on the
frontier DPs of `frontiers` and the target grid of `targets`), producing a `matrix.StrategyMatrix`."""
