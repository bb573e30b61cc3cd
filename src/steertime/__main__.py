"""`python -m steertime ...` (and `torchrun -m steertime train ...`)."""

from steertime.cli import main

main()
