"""Exit statuses shared by the analysis commands (``analyze``, ``align``, ``process``).

One convention, so scripts driving the contract commands can tell "bad
invocation" from "this input cannot be analysed" from "weights missing".
"""

from __future__ import annotations

OK = 0
ERROR = 1  # input file missing or output not writable
NOT_DONE = 3  # not analysable / no trustworthy alignment / pipeline incomplete; the reason is in the JSON
NO_MODEL = 4  # model weights missing or corrupt
