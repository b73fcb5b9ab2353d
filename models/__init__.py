"""The trained models Outpost ships on the build side (each bundle carries its own signed copy):
`ranker/`, the learned line ranker (`make ranker` rebuilds it; trainer/ranker/crossrank.py)."""
