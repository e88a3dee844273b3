"""Physics of the measurements: FFTs, coil handling, masks and holes (pure functions)."""
