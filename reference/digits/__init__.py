"""Real images: scikit-learn's bundled digits with torch augmentations (docs/DIGITS.md, docs/THEORY.md §6-7).

``data`` (images, augmentations), ``exact`` (the empirical N x M distribution, residue vs strength),
``metrics`` (kNN, few-shot probe, unit variances), ``training`` (minibatch SimCLR runs), ``checks`` (claims).
Needs the ``digits`` extra: pip install -e ".[digits]".
"""
