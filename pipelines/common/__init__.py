"""What every training stage shares: recipe loading, MLflow runs, model sources."""
