"""Tau2-Bench for Matrix: user simulator <-> assistant with domain tools, scored as tau2 scores them."""
