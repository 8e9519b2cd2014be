"""Plain state + rules for each CVAT resource. Models never see Flask: they take a Store and
arguments, raise fakecvat.errors on bad input, and return documents."""
