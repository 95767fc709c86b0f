"""Learning: the fit loops (ANI, SchNet), splits and seeds, committee uncertainty,
selection of frames to label (with its whole policy), hyperactive learning, and the
evaluation of an iteration against the reference."""
