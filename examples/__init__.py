"""An example user package for the regression-check mode (docs/REGRESSION.md): a loss and networks."""
