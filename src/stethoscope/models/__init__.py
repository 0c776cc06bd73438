"""Plain `nn.Module`s: training networks (`forward` returns losses), each system's scorer."""
