import sys

# A Ctrl-C while the command line loads is answered as main() answers one later: one line.
try:
    from .cli import main
except KeyboardInterrupt:
    print("mcugen: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
