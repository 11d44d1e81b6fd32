"""Side-by-side comparison of generated text: the comparison directory's files, the pairs a rater
judges, the append-only votes log, the rating page, and a Bradley-Terry report of the votes.
Nothing here loads a model: `python -m roots_jax.compare` generates and judges with one."""
