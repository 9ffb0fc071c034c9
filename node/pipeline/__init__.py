"""The analysis pipeline: job kinds and their handlers, listed in one place.

``analyze_study`` (written by study completion) classifies and analyses each
image of a completed study, encodes its SEG/SR/overlay results, queues them in
the outbox and re-runs pairing for the patient; ``analyze_pair`` aligns a paired
pre/post exam and encodes the pair SR and the colour difference map.
"""

from __future__ import annotations

from node.jobs.worker import JobHandler


def job_handlers() -> dict[str, JobHandler]:
    """Job kind -> handler. Imported lazily so the SCP process never loads models."""
    from node.pipeline import pair_stage, study_stage

    return {
        "analyze_study": study_stage.run,
        "analyze_pair": pair_stage.run,
    }
