"""Offline planning: cost models (`costs`: late fusion per encoder, joint per configuration) and
the integer-exact strategy-matrix solver (`solver`)."""
