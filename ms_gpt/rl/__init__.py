"""The reinforcement-learning step of the ChatGPT recipe, in one package:

- :mod:`ms_gpt.rl.ppo` - PPO's math (shaped rewards, GAE, clipped losses, the adaptive KL controller);
- :mod:`ms_gpt.rl.rollouts` - scoring sampled tokens (log-probabilities, values, entropy) in one forward;
  the tokens themselves come from the one sampler, :func:`ms_gpt.generation.sample`;
- :mod:`ms_gpt.rl.value_head` - the value head on the policy's trunk;
- :mod:`ms_gpt.rl.reward` - a reward model's score of (prompt, response) texts;
- :mod:`ms_gpt.rl.trainer` - the prompts and the PPO step, run by the one training loop.

``ms-gpt ppo`` (:mod:`ms_gpt.flows.ppo`) is the command around them.
"""
