"""The offline asset kit: orchestrator side (no TensorFlow) and its builder (its own process)."""
