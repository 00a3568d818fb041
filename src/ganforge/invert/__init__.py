"""A trained generator as a prior for real images: inversion, inpainting and editing.

  projector.py  find the latent (and, for a conditional G, the class) whose image matches a target
  masks.py      hole masks (centre square, random boxes, free-form strokes) and their hole-share bins
  inpaint.py    masked inversion and its baselines (biharmonic, the nearest train image's pixels)
  morpho.py     Morpho-MNIST's stroke measures (thickness, slant, width) of digit images
  edit.py       class changes at a fixed latent, attribute directions (InterFaceGAN) and their edits
  scores.py     the tables every stage writes: judge accuracy and PSNR, binned by hole share
"""
