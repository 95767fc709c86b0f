"""Chemistry: molecules, geometry and bonds, when a bond broke (and the bond report),
labellers (the reference methods), and barriers with their statistics over replicas."""
