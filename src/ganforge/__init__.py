"""ganforge: reproducible GAN training and judging."""
