"""``python -m twin``: the same CLI as the ``twin`` command, for scripts that run it with the
interpreter they were started with."""

from twin.cli import main

main()
