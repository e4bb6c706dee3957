"""Lightning callbacks that sit above training, evaluation and attacks: periodic safety evaluation, attack
evaluation, and gate calibration after training."""
