"""``python -m stream`` is the ``snipstream`` command."""

from .cli import entry

entry()
