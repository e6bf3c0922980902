"""Real images: scikit-learn's bundled digits with torch augmentations (docs/THEORY.md, "Real images")."""
