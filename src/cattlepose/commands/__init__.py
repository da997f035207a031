"""The commands: what each `cattlepose` command does, between the command line (cli.py: parse, print) and the
library (engine/, report/, data/). One module per command; a new stage is one new module here."""
