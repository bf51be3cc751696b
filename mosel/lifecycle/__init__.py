"""A model's offline life: train, evaluate (accuracy per configuration), profile (latency per
encoder and batch size), solve (strategy matrix from the store's profiles) and publish to the
profile store."""
