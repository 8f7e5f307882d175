"""The maths and the learners: Gumbel noise and estimators, networks, critics, and each
learner's update."""
