"""Faust agents: counting (per DPU, per space) and the sinks that write results out."""
