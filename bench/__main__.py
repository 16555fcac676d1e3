"""`python -m bench ...` = `bench ...` (what launchers such as torchrun and accelerate start)."""

from bench.cli import main

main()
