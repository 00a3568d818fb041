"""Image-to-image translation (issue 31): pix2pix (Isola et al. 2017) and CycleGAN (Zhu et al. 2017) as
junyanz/pytorch-CycleGAN-and-pix2pix defines them, widths and depths as settings so that they fit a CPU.

    nets.py  the ResNet and U-Net generators, the PatchGAN discriminator (its receptive field computed), the
             pool of past fakes (a module: its images and count are checkpointed with the networks), both
             directions as one module (Translators) and its model file
    run.py   the translate pipeline's stages as library code: judges, train, translate, evaluate
The GAN maths is the task object tasks/translation.py, stepped by the one engine.
"""
