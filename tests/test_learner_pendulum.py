"""SAC and REDQ-SAC learn Pendulum-v1 in-process (no network, not real-time) within 12,000 env steps."""

import time

import numpy as np
import pytest
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.source import GymSource
from tmrlx.learner.train import Trainer

MAX_ENV_STEPS = 12_000
TARGET = -250.0

PENDULUM = {
    "ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}},
    "CUDA_TRAINING": False, "MEMORY_SIZE": 20_000, "BATCH_SIZE": 128, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 500,
    "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 1.0, "TRAINING_STEPS_PER_ROUND": 500, "ROUNDS_PER_EPOCH": 1,
    "UPDATE_BUFFER_INTERVAL": 50, "UPDATE_MODEL_INTERVAL": 50, "MAX_EPOCHS": 1000,
    "ALG": {"LR_ACTOR": 1e-3, "LR_CRITIC": 1e-3, "LR_ENTROPY": 1e-3, "GAMMA": 0.99, "POLYAK": 0.995,
            "LEARN_ENTROPY_COEF": True, "TARGET_ENTROPY": -1.0, "ALPHA": 0.2,
            "BETAS_ACTOR": [0.9, 0.999], "BETAS_CRITIC": [0.9, 0.999]},
}


def learns(overrides: dict, seed: int) -> tuple[bool, int, float]:
    """Train until the last 10 episodes average >= TARGET or MAX_ENV_STEPS; (success, env steps, last-10 mean)."""
    cfg = load_config(overrides=PENDULUM).replace(overrides)
    spec = spec_from_config(cfg)
    source = GymSource("Pendulum-v1", spec, seed=seed, steps_per_poll=50)
    trainer = Trainer(cfg, spec, source, arch=Arch.for_spec(spec, hidden=(64, 64)), seed=seed)
    trainer.publish()
    mean = -np.inf
    while source.step < MAX_ENV_STEPS:
        trainer.run_epoch()
        if len(source.returns) >= 10:
            mean = float(np.mean(source.returns[-10:]))
            if mean >= TARGET:
                return True, source.step, mean
    return False, source.step, mean


def two_of_three(overrides: dict) -> list:
    results = []
    for seed in range(3):
        t = time.perf_counter()
        results.append((*learns(overrides, seed), round(time.perf_counter() - t, 1)))
        print(results[-1])
        if sum(r[0] for r in results) >= 2:
            break
    return results


@pytest.mark.slow
def test_sac_learns_pendulum():
    results = two_of_three({})
    assert sum(r[0] for r in results) >= 2, results


@pytest.mark.slow
def test_redq_sac_learns_pendulum():
    results = two_of_three({"ALG": {"ALGORITHM": "REDQSAC", "REDQ_N": 5, "REDQ_M": 2, "REDQ_Q_UPDATES_PER_POLICY_UPDATE": 2},
                            "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 2.0})
    assert sum(r[0] for r in results) >= 2, results
