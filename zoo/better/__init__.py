"""Better models from the same data, on adapt's engine and run records: tuning (``tune``), weight averaging
(``soup``), ensembles (``ensemble``) and distillation into a smaller backbone (``distill``). Every trial,
ingredient, member and student is an ordinary run, and so is what they make."""
