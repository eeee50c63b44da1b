# Scanned by nnU-Net's trainer lookup (nnUNet_extTrainer). Holds only shim modules that re-export trainers
# from their canonical modules, so the classes keep importable names (picklable, one identity).
