"""Datasets: registry of known sources, fetchers, readers, and the prepared .npz format every stage reads."""
