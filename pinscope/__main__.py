"""`python -m pinscope`: the same command line as the `pinscope` script."""

from pinscope.cli import main

main()
