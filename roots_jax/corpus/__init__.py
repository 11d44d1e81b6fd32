"""Corpus preparation as ROOTS was built: normalisation, language identification, the ROOTS
quality filters, an n-gram language model, deduplication, personal-data redaction and
decontamination, as datatrove pipeline steps (the pipeline itself: roots_jax.runs.prep)."""
