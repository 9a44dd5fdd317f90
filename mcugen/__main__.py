import sys

# A Ctrl-C while the command line loads is answered as main() answers one later: one line.
try:
    from .cli import main

    status = main()
except KeyboardInterrupt:
    print("mcugen: interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
