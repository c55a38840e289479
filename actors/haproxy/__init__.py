"""The HAProxy bridge: cluster verdicts applied to a local HAProxy's servers."""
