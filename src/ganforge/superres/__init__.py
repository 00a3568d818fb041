"""x4 super-resolution (Ledig et al. 2017; Wang et al. 2018): a third application beside generation and the
generator-as-prior one, on the photos data set and on MNIST digits (7 -> 28 px).

    degrade.py  the LR images: bicubic downscaling with antialiasing (PIL's kernel), and the bicubic baseline
    nets.py     SRResNet (residual blocks without BatchNorm, pixel-shuffle upsampling) and the patch D
    crops.py    random HR crops of photos of any size, drawn on the device from a seeded stream
    scores.py   PSNR/SSIM on the Y channel with the scale as border crop (scikit-image), RGB PSNR, judge FID
    tiles.py    upscaling an image of any size in overlapping tiles, equal to the untiled output
    run.py      the stages' work: judge, train (psnr, then gan), upscale, evaluate
The GAN maths is the task object tasks/superres.py, stepped by the one engine (train/engine.py).
"""
