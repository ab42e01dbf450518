"""Datasets, the DataModule, the synthetic generator, the CCP converter and the checker."""
