"""Backbones and feature extraction."""
