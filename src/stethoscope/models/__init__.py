"""Plain `nn.Module`s: training networks (their `forward` returns losses) and each system's scoring module."""
