"""Plain ``torch.nn.Module`` building blocks, one file per fusion family; no scikit-learn here."""
