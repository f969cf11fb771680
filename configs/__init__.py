"""Experiment configs: `get_config(arg) -> ml_collections.ConfigDict`, one file per experiment."""
