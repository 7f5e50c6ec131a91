"""The detached sender, installed as `visivo_telemetry._sender`.

Its modules live in the repository's top-level `sender/` folder, which the wheel installs in
this package's place. In a source checkout this stand-in points the package there, so that one
import name works in a checkout and in an install, and no top-level `sender` is ever imported.
"""

import os as _os

__path__ = [_os.path.join(_os.path.dirname(_os.path.dirname(_os.path.dirname(__file__))), "sender")]
