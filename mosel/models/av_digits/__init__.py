"""The built-in AV-Digits model: spoken digit (FSDD) + handwritten digit + a synthetic video of
the same class, paired AV-MNIST style. `pack` is the model, `dataset` builds the splits from
the raw readers `fsdd` and `digits`."""
