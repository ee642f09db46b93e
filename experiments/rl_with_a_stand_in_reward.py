"""
`train_rl.py` with a stand-in reward, for checking a change to RL on a model too untrained to
solve anything: reward 1 for a rollout whose text has an even number of characters, else 0. The
groups then have rewards that differ, so the policy gradient, the clipped ratio and the KL term
all act, where the real reward of an untrained model is 0 everywhere and trains nothing.

    python experiments/rl_with_a_stand_in_reward.py --init out/short_sft_apr --preset tiny --steps 2 --out out/rl_stand_in

Takes train_rl.py's arguments. Deterministic for given arguments, so the same command run on
two versions of the code must write the same weights (`experiments/same_results.py`).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import countdown  # noqa: E402
import train_rl  # noqa: E402


def stand_in_reward(nums, target, text) -> float:
    return float(len(text) % 2 == 0)


if __name__ == "__main__":
    countdown.reward = stand_in_reward  # train_rl scores rollouts through countdown.reward
    sys.exit(train_rl.main())
