"""Selection: scorers, the classifier, ensembles, quantiles and the budgeted two-pass plan with its Beam steps."""
