"""Kaggle kernel packaging."""
