"""The matter catalogue and the codes it is keyed by."""
