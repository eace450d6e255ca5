"""``python -m nanosd_nas``: the same as the ``nanosd-nas`` command."""

from nanosd_nas.cli import main

main()
