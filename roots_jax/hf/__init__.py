"""Hugging Face checkpoints: the safetensors format, config.json and state-dict name maps for
GPT-2, GPT-NeoX, Llama, BERT and T5, and a sentencepiece model as tokenizer.json
(`python -m roots_jax.convert`). Needs neither torch nor transformers, except to read
pytorch_model.bin files."""
