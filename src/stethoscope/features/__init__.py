"""Audio features: the DCASE log-mel, decoding clips into chunks once, the feature cache."""
