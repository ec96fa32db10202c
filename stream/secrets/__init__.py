"""Secrets: credentials found in a snippet before it leaves the machine, and cut out of its text.

```
scanner.py    Hit, SecretScanner: scan a snippet, merge overlapping findings, redact
rules.py      which detect-secrets plugins run (and which not, and why), kinds, limits, prefilter patterns (data)
detectors.py  the plugins, loaded once per process on first use
gate.py       the prefilter: which lines any detector could match at all
spans.py      where a plugin's finding sits in its line
pem.py        PEM private-key blocks
```
"""

from __future__ import annotations

from .rules import EXCLUDED_PLUGINS, KINDS
from .scanner import Hit, SecretScanner, placeholder

__all__ = ["Hit", "SecretScanner", "KINDS", "EXCLUDED_PLUGINS", "placeholder"]
