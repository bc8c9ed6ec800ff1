"""Progressive delivery at the gateway: a candidate version takes a growing share of a
model's traffic, step by step, while the gateway compares it with the champion in the
same window; then the alias moves, or the candidate is rolled back, with no one watching.

- ``spec``: what a rollout is (steps, thresholds, the optional judge) and its validation;
- ``analysis``: the windows of figures per version, and the decision for one step;
- ``store``: rollouts, their figures and the leader lease in the gateway's database;
- ``cache``: the newest rollouts copied to Redis, which replicas read between database reads;
- ``controller``: the loop every replica runs (apply weights, record figures) and the
  leader alone acts on (analyse, advance, promote, roll back, tag MLflow);
- ``judge``: an LLM judge that scores sampled answers of both versions.
"""
