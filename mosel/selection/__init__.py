"""The selection service's logic: admission, EDF queue, policies, batching, fusion."""
