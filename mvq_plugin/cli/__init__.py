"""The command-line tools a pip user needs, installed as console scripts (setup.py):
``mvq-plan``, ``mvq-allocate``, ``mvq-hw-report``, ``mvq-export``. Each module's ``main(argv)``
is the command; ``tools/<name>.py`` in a checkout runs the same ``main``. Nothing in the
library imports this package."""
