"""Blending model probabilities into one prediction."""
