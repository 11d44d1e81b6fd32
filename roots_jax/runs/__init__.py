"""What a run is and does, for every kind of run: its directory (workdir), assembling model,
optimizer, shardings and jitted steps (assemble), the one train loop (loop), each kind
(pretrain, finetune, convert), scoring one (evaluation) and loading one for use (load)."""
