"""Pure 2D RoPE math (torch only): frequencies, positions, angles, rotation, kernels and spectra."""
