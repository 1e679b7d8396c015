"""Shared layers, one concept a file (equalized LR, FIR resampling, modulated conv, ... arrive in [3/5])."""
