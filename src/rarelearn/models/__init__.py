"""Neural-network potentials: the committee base, one model-file format with one loader and
saver for every family (:mod:`.files`), the ANI and SchNet families, TorchScript export."""
