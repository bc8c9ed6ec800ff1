"""The kit every pipeline stage is built from; stages import it, never each other.

- ``recipes``: YAML recipes checked in full (strict pydantic models, dotted overrides)
- ``entry``: the one command line of every stage, and the typed result it prints
- ``settings``: the environment variables a stage reads
- ``text_data``: training text from the curation output; packing it into fixed-length rows
- ``training_recipe``: the recipe sections every training stage shares (scaling, optimiser, loop)
- ``sizing``: parameters, FLOPs per token, memory and rows, checked before a run starts
- ``engine``: the model as a worker trains it (precision, optimiser, schedule, DDP or DeepSpeed)
- ``train_loop``: the loop inside Ray Train's TorchTrainer (one step, the throughput window)
- ``checkpoints``: a checkpoint every N steps and the export at the end; resuming from one
- ``train_runner``: the driver side of a training stage (MLflow run, TorchTrainer, registration)
"""
