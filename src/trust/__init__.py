"""How far to trust a trained LeNet-5: ``python -m src.trust ckpt_path=<checkpoint | run folder | sweep folder>``.

- calibration: ECE (15 bins) and NLL on the test set, a reliability diagram, temperature scaling fitted on the
  validation split (Guo et al. 2017);
- corruptions: the 15 MNIST-C corruptions (Mu & Gilmer 2019), generated per seed (or the official files);
- attacks: FGSM and PGD in pixel space, accuracy against epsilon (PyTorch's FGSM tutorial, Madry et al. 2018);
- attributions: saliency, Integrated Gradients and Grad-CAM with Captum.

Modules: __main__ (the command: its settings, checked; every checkpoint loaded before any work), targets (which
checkpoints, where each report goes, the images), checks (one checkpoint's report), and one module per check's
method (calibration, corruptions, attacks, attributions) and figures; docs/trust.md has the figures measured.
"""
