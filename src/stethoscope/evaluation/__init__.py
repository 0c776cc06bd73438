"""DCASE metrics, result files, the K-fold benchmark protocol and paired comparisons."""
