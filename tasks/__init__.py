"""Task adapters. Each module registers its tasks with `bench.registry.register_task`."""
