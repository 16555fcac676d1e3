"""Pretraining backends. Each module registers itself with `bench.registry.register_model`."""
