"""`python -m cattlepose` (and `torchrun -m cattlepose train ...`)."""

from cattlepose.cli import main

main()
