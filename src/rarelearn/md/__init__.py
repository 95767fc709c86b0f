"""Sampling: the LAMMPS engine, blow-up rules, MD and steered-MD drivers (one replica or a
batch), and COGEF scans."""
