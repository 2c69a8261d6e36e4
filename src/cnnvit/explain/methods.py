"""The names of the explanation methods (kept free of torch, for the command line)."""

CAM_METHODS = ("gradcam", "gradcam++")
# auto: Grad-CAM for CNNs, attention rollout for ViTs
METHODS = ("auto", *CAM_METHODS, "rollout", "vit-gradcam")
