"""A toy classifier app, shaped like a public Hydra/scikit-learn app, in pure Python."""
