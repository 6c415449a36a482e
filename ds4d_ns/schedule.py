"""The training schedule of a ds4d run, derived in one place from its two sources.

Sources: the static stage's length (``--pipeline.model.static-stage-steps``) and the run's length
(``--max-num-iterations``). Derived from them, here only: when densification starts (warm-up) and
stops, and over how many steps the learning rates decay. The method factory
(``method_configs/ds4d_config.py::make_ds4d_config``) fills the configuration from
:class:`TrainingSchedule`; the datamanager takes the static stage's length from the model (the
pipeline hands it over), so the two cannot drift apart.

At ``ns-train`` set-up (:func:`settle_schedule`), derived values still as a schedule made them follow
a changed source (``--max-num-iterations 2000`` shortens everything); a derived value set on its own
that disagrees with the sources, or a negative length, stops the run with a
:class:`ds4d_ns.errors.UserError` naming the flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ds4d_ns.errors import UserError

WARMUP_CAP = 500
"""Densification starts after a tenth of the run, at most this many steps."""
DENSIFY_SHARE = 6 / 7
"""Densification stops after this share of the run (STAG4D: 6000 of 7000 steps)."""


@dataclass(frozen=True)
class TrainingSchedule:
    """A run's stages and the step counts derived from them."""

    static_steps: int
    """Steps fitting the canonical Gaussians on the middle frame."""
    dynamic_steps: int
    """Steps training canonical Gaussians and deformation over all frames."""

    @property
    def total(self) -> int:
        """Length of the run: ``--max-num-iterations`` and every learning-rate decay."""
        return self.static_steps + self.dynamic_steps

    @property
    def warmup_length(self) -> int:
        """Steps before the first densification."""
        return min(WARMUP_CAP, self.total // 10)

    @property
    def stop_split_at(self) -> int:
        """Step after which Gaussians are no longer grown or pruned."""
        return int(self.total * DENSIFY_SHARE)


def _decay_steps(config) -> List[int]:
    """Decay lengths of the run's learning-rate schedulers that have one."""
    from ds4d_ns.schedulers import LogLinearDecaySchedulerConfig

    return [
        entry["scheduler"].max_steps
        for entry in config.optimizers.values()
        if isinstance(entry.get("scheduler"), LogLinearDecaySchedulerConfig)
    ]


def schedule_of(total: int, warmup_length: int, stop_split_at: int, decay_steps: List[int]) -> Optional[int]:
    """The run length whose :class:`TrainingSchedule` gives these derived values, None if none does."""
    if any(steps != total for steps in decay_steps):
        return None
    derived = TrainingSchedule(0, total)
    return total if (warmup_length, stop_split_at) == (derived.warmup_length, derived.stop_split_at) else None


def settle_schedule(config) -> Optional[str]:
    """Make a trainer config's derived step counts follow its sources, in place; say what changed.

    Raises:
        UserError: the sources leave no dynamic stage, or a derived value was set apart from them.
    """
    model = config.pipeline.model
    static, total = model.static_stage_steps, config.max_num_iterations
    if static < 0 or total < 1:
        raise UserError(
            f"--pipeline.model.static-stage-steps {static} and --max-num-iterations {total}: the static stage "
            "takes 0 or more steps and the run at least 1"
        )
    # a run shorter than the static stage (a smoke test) trains the canonical Gaussians only
    wanted = TrainingSchedule(min(static, total), total - min(static, total))
    decay = _decay_steps(config)
    current = (model.warmup_length, model.stop_split_at, decay)
    if current == (wanted.warmup_length, wanted.stop_split_at, [total] * len(decay)):
        return None
    made_for = schedule_of(decay[0] if decay else total, model.warmup_length, model.stop_split_at, decay)
    if made_for is None:
        raise UserError(
            f"the training schedule disagrees with itself: warm-up {model.warmup_length}, densification stop "
            f"{model.stop_split_at} and learning-rate decays over {sorted(set(decay))} steps, for a run of "
            f"--max-num-iterations {total} whose schedule gives {wanted.warmup_length}, {wanted.stop_split_at} and "
            f"{total}. They follow --max-num-iterations and --pipeline.model.static-stage-steps: leave "
            "--pipeline.model.warmup-length, --pipeline.model.stop-split-at and the optimizers' max-steps unset"
        )
    model.warmup_length, model.stop_split_at = wanted.warmup_length, wanted.stop_split_at
    for entry in config.optimizers.values():
        if entry.get("scheduler") is not None and hasattr(entry["scheduler"], "max_steps"):
            entry["scheduler"].max_steps = total
    return (
        f"schedule: {wanted.static_steps} static + {wanted.dynamic_steps} dynamic steps "
        f"(warm-up {wanted.warmup_length}, densification until {wanted.stop_split_at}, "
        f"learning rates decay over {total} steps)"
    )
