"""Step: the scheduled retrain's gate (never cached): ``distill`` runs only when an input differs from the
champion's."""

import logging
from typing import Annotated

from zenml import log_metadata, step

from empathy_distill.config import DistillConfig

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def retrain_gate(config: DistillConfig, force: bool = False) -> Annotated[list[str], "retrain_decision"]:
    """What ``empathy-distill retrain`` does, at the time the schedule fires.

    The data fingerprint, the input hashes and the champion are read when this step runs (a
    recurring run of ``distill`` itself would carry the values of the day it was scheduled). When
    something changed, ``distill`` is submitted to the same stack and this step returns once it is.
    """
    from app.registry_ops import retrain

    lines = retrain(config, force=force)
    for line in lines:
        logger.info(line)
    log_metadata({"decision": lines[0]})
    return lines
