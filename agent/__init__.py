"""Learning: Gumbel maths, policies, the pathwise / REINFORCE / PPO learners, evaluation."""
