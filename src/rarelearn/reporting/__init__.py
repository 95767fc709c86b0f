"""Reports: the campaign's figures and the studies (baselines, transfer, strain rates)."""
