"""The kit every pipeline stage is built from; stages import it, never each other.

recipes           YAML recipes checked in full (strict pydantic models, dotted overrides)
text_data         training text from the curation output; packing into fixed-length rows
training_recipe   the recipe sections every training stage shares (scaling, optimiser, loop)
train_loop        the loop inside Ray Train's TorchTrainer (DDP or DeepSpeed ZeRO)
train_runner      the driver side of a training stage: MLflow run, TorchTrainer, registration
cli               the command line every training stage shares
"""
